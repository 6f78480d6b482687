package telemetry_test

// unixPerms: Windows reports 0666 for any writable file; ACLs protect it.
const unixPerms = false
