// Package sensor is the reference content interpreter: it plays the kernel
// agent in tests, in preflight and in the demo.
//
// It is written the way real content interpreters are written. The sensor
// fills a fixed input array for each event, as many entries as its capability
// manifest says it supplies for the event's template type, and the
// interpreter indexes that array directly with the field numbers the content
// names. Content that references a field the sensor does not supply therefore
// panics with an index out of range, exactly as Channel File 291 made the
// 2024 interpreter read past its array. The validator exists to make sure no
// such content ever reaches it.
//
// Its behaviour follows the version its capability manifest names, as an
// agent build's would: the 7.11 build matches patterns by backtracking, 7.12
// and later in quadratic time at worst (FirstLinearGlob), with the same
// verdicts, so that content can cost an older agent far more than a newer
// one. A Meter counts what the sensor did and how long each event took: the
// agent's side of the health the daemon reports.
package sensor
