// Command auditsend replays audit log files (JSON lines, as the apiserver's
// log backend writes them) to an auditpipe ingest with kube-apiserver's own
// webhook client: same batching, same EventList bodies, same retries. The
// demo and the load tests use it.
//
//	auditsend --url http://127.0.0.1:8080/audit/demo testdata/demo/sample.jsonl
//	auditsend --kubeconfig webhook.kubeconfig audit.log
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditlog"
	"github.com/auditpipe/auditpipe/internal/auditsend"
	"github.com/auditpipe/auditpipe/internal/cli"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "auditsend:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("auditsend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "ingest webhook URL (writes a kubeconfig for it); or use --kubeconfig")
	kubeconfig := fs.String("kubeconfig", "", "webhook kubeconfig, as given to kube-apiserver --audit-webhook-config-file")
	batchWait := fs.Duration("batch-max-wait", 100*time.Millisecond, "--audit-webhook-batch-max-wait (the apiserver's default is 30s)")
	batchSize := fs.Int("batch-max-size", 400, "--audit-webhook-batch-max-size")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if (*url == "") == (*kubeconfig == "") {
		return errors.New("give exactly one of --url and --kubeconfig")
	}
	if *url != "" {
		dir, err := os.MkdirTemp("", "auditsend")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*kubeconfig = filepath.Join(dir, "webhook.kubeconfig")
		if err := auditsend.WriteKubeconfig(*kubeconfig, *url, auditsend.KubeconfigOptions{}); err != nil {
			return err
		}
	}
	sender, err := auditsend.New(auditsend.Config{Kubeconfig: *kubeconfig, MaxBatchWait: *batchWait, MaxBatchSize: *batchSize})
	if err != nil {
		return err
	}
	read := 0
	for _, path := range fs.Args() {
		n, err := sendFile(sender, path)
		read += n
		if err != nil {
			sender.Shutdown()
			return err
		}
	}
	sender.Shutdown()
	sent, failed, dropped := sender.Stats()
	fmt.Fprintf(stderr, "auditsend: read %d events, sent %d, failed %d, dropped %d\n", read, sent, failed, dropped)
	if failed > 0 || dropped > 0 {
		return fmt.Errorf("%d events not delivered", failed+dropped)
	}
	return nil
}

func sendFile(sender *auditsend.Sender, path string) (int, error) {
	n := 0
	// One event a line, or one EventList a line (v1 or v1beta1).
	err := auditlog.Events(path, func(line, item int, data []byte) error {
		// The batcher holds events until their batch is sent, and decoded
		// bodies alias the input: copy the line out of the reader's buffer.
		data = bytes.Clone(data)
		var ev auditv1.Event
		if err := auditjson.DecodeEvent(data, &ev); err != nil {
			if item > 0 {
				return fmt.Errorf("%s:%d item %d: %w", path, line, item, err)
			}
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := sender.Send(&ev); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}
