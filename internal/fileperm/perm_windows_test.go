package fileperm_test

// unixPerms: Windows modes do not describe ACLs; both checks accept all.
const unixPerms = false
