package server

// unixPerms: Windows modes do not describe ACLs; fileperm checks nothing.
const unixPerms = false
