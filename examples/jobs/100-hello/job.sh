#!/bin/bash
echo "hello from $(hostname) in $PWD"
