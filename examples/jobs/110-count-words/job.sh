#!/bin/bash
# Input files travel with the job; results written here land in complete/ with it.
wc -w < poem.txt > result.txt
echo "counted $(cat result.txt) words"
