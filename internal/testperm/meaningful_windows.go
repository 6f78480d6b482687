package testperm

// Meaningful reports whether file modes say who may read or write a file:
// not on Windows, where ACLs decide.
const Meaningful = false
