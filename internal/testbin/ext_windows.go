package testbin

// Ext ends the name of a binary built for this system.
const Ext = ".exe"
