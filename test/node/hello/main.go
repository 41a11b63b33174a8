// Command hello is the program in the images of the real-node test (make
// e2e-node): a static binary that prints one marker line naming the image
// it came from (the file /etc/icr-e2e-image of its layer) and then waits
// for SIGTERM. Installed as /pause it is the pod sandbox image and prints
// nothing.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// Marker starts the line the test looks for in the container's log; the
// test has its own copy of it.
const Marker = "ICR-E2E-NODE-HELLO"

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if filepath.Base(os.Args[0]) != "pause" {
		image := "unknown"
		if b, err := os.ReadFile("/etc/icr-e2e-image"); err == nil {
			image = strings.TrimSpace(string(b))
		}
		fmt.Printf("%s from %s (pid %d)\n", Marker, image, os.Getpid())
	}
	<-sig
}
