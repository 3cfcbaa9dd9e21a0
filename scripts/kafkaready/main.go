// Command kafkaready is scripts/kafka.sh's helper: it picks free loopback
// ports for a broker to listen on, and waits until a broker answers a
// metadata request, so the script waits on readiness rather than on a sleep.
//
//	kafkaready -free-ports 2
//	kafkaready -bootstrap 127.0.0.1:39092 -timeout 90s -pid 1234
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// pollInterval is how long to wait between two metadata requests. A JVM
// broker takes seconds to start; a quarter second keeps the wait short
// without busy-looping on a two-core machine.
const pollInterval = 250 * time.Millisecond

func main() {
	freePorts := flag.Int("free-ports", 0, "print this many free loopback TCP ports, one a line, and exit")
	bootstrap := flag.String("bootstrap", "", "broker address to wait for (host:port)")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait for the broker")
	pid := flag.Int("pid", 0, "broker process id: stop waiting as soon as it has exited")
	flag.Parse()

	if *freePorts > 0 {
		ports, err := pickPorts(*freePorts)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kafkaready: picking ports:", err)
			os.Exit(1)
		}
		for _, p := range ports {
			fmt.Println(p)
		}
		return
	}
	if *bootstrap == "" {
		fmt.Fprintln(os.Stderr, "kafkaready: -bootstrap or -free-ports is required")
		os.Exit(2)
	}
	start := time.Now()
	if err := wait(*bootstrap, *timeout, *pid); err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: waiting for %s: %v\n", *bootstrap, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kafkaready: %s ready after %s\n", *bootstrap, time.Since(start).Round(10*time.Millisecond))
}

// pickPorts binds n listeners at once, so the ports differ, and closes them.
// Another process may take one before the broker binds it; on the ephemeral
// range that is rare, and the broker then fails to start loudly.
func pickPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// wait asks the broker for metadata until it lists at least one broker and a
// controller: only then does it serve produce, fetch and group requests.
func wait(addr string, timeout time.Duration, pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	transport := &kafkago.Transport{DialTimeout: 2 * time.Second}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(addr), Transport: transport, Timeout: 5 * time.Second}
	var last error
	for {
		if pid > 0 && syscall.Kill(pid, 0) != nil {
			return fmt.Errorf("broker process %d exited (last probe: %v)", pid, last)
		}
		resp, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
		switch {
		case err != nil:
			last = err
		case len(resp.Brokers) == 0:
			last = errors.New("metadata lists no broker")
		case resp.Controller.ID < 0:
			last = errors.New("metadata names no controller")
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last probe: %v)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}
