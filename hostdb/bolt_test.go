package hostdb

import bolt "go.etcd.io/bbolt"

// bboltTx lets tests look at the raw database.
type bboltTx = bolt.Tx
