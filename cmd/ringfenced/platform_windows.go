package main

// goos names this platform in binary targets (ringfenced/<goos>-<goarch>/<version>).
const goos = "windows"
