// Command hello is what testbin's test builds.
package main

import "fmt"

var word = "hello"

func main() { fmt.Println(word) }
