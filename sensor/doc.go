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
package sensor
