// pause: the init process of every pod sandbox on the test bed's node. It holds the pod's namespaces open,
// reaps orphaned children and exits on SIGINT/SIGTERM, like Kubernetes' own pause. Built here because no image
// registry is reachable (see build-pause-image.sh).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
