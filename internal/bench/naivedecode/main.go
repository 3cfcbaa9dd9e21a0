// Command naivedecode is the baseline of the detect scan process rows of
// make bench (internal/bench BenchmarkScanProcess): the least a program
// that reads an audit log does, written the obvious way. It reads the
// files named on its command line a line at a time and decodes each line
// with encoding/json into the apiserver's own auditv1.Event, judging
// nothing, and prints the number of events decoded.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

func main() {
	n, err := decodeFiles(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "naivedecode:", err)
		os.Exit(1)
	}
	fmt.Println(n)
}

func decodeFiles(paths []string) (int, error) {
	n := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return n, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var ev auditv1.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				_ = f.Close()
				return n, fmt.Errorf("decoding %s line %d: %w", p, n+1, err)
			}
			n++
		}
		err = sc.Err()
		_ = f.Close()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
