package main

// defaultMaxConns is a fixed --max-conns on Windows: sockets are handles,
// and a process has no RLIMIT_NOFILE-like limit on them to derive the cap
// from; the cap still bounds the memory and handles slow clients can pin.
func defaultMaxConns() int { return maxDefaultConns }
