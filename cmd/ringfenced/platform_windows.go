package main

// goos names this platform in agent targets (agent/<goos>-<goarch>/<version>).
const goos = "windows"
