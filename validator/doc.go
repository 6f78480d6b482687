// Package validator parses, encodes and checks channel files, the content a
// kernel agent's interpreter loads at run time and at boot.
//
// It answers two questions before any host loads a file:
//
//   - Validate: is the file well formed, and does every template instance
//     reference only inputs that the installed interpreter supplies, with
//     matchers that fit their field types and stay within the interpreter's
//     limits? It returns every problem found, each with a stable code.
//   - Preflight: does the real interpreter survive the file? It loads the file
//     in a child process with time and memory limits, drives it with events
//     synthesized to reach every referenced field and then with random events,
//     and reports a crash, a timeout or memory exhaustion with the evidence.
//
// Channel File 291 (July 2024) would have failed both: its template type
// declared 21 input fields, the sensor supplied 20, and its instances matched
// on the 21st. The binary format is specified in docs/channel-file-format.md.
package validator
