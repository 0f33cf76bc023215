#!/bin/bash
sleep 2
echo "slept 2 s"
