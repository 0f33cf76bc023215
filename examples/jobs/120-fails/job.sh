#!/bin/bash
echo "this job fails on purpose" >&2
exit 3
