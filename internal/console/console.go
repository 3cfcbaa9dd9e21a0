// Package console prints findings for people and scripts: an aligned table
// on a terminal, JSON lines (the findings table's field names) otherwise.
package console

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Format selects how findings are printed.
type Format int

// Formats.
const (
	FormatJSON Format = iota
	FormatTable
)

// DetectFormat picks the table for a terminal and JSON lines for a pipe or
// file, so `detect scan x.log | jq` works without a flag.
func DetectFormat(f *os.File) Format {
	st, err := f.Stat()
	if err == nil && st.Mode()&os.ModeCharDevice != 0 {
		return FormatTable
	}
	return FormatJSON
}

// Printer writes findings; it is the sink detect uses when no ClickHouse is
// configured. Events are not printed: only what a detector flagged.
type Printer struct {
	mu     sync.Mutex
	w      io.Writer
	format Format
	header bool
	count  int
	buf    []byte // JSON lines of one Print, written at once
}

var _ pipeline.Sink = (*Printer)(nil)

// NewPrinter prints to w in format.
func NewPrinter(w io.Writer, format Format) *Printer {
	return &Printer{w: w, format: format}
}

// Count returns how many findings were printed.
func (p *Printer) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// Write prints the batch's findings.
func (p *Printer) Write(_ context.Context, b pipeline.Batch) error {
	return p.Print(b.Findings)
}

// Print prints findings.
func (p *Printer) Print(fs []pipeline.Finding) error {
	if len(fs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count += len(fs)
	if p.format == FormatJSON {
		b := p.buf[:0]
		var err error
		for i := range fs {
			if b, err = AppendJSONLine(b, &fs[i]); err != nil {
				break
			}
		}
		p.buf = b
		if _, werr := p.w.Write(b); werr != nil {
			return fmt.Errorf("printing finding: %w", werr)
		}
		if err != nil {
			return fmt.Errorf("printing finding: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	if !p.header {
		fmt.Fprintln(tw, "TIME\tSEVERITY\tDETECTOR\tCLUSTER\tUSER\tSOURCE IP\tSUMMARY")
		p.header = true
	}
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			f.Time.UTC().Format("2006-01-02 15:04:05"), strings.ToUpper(f.Severity.String()), f.Detector,
			f.Cluster, orDash(f.Username), orDash(f.SourceIP), oneLine(f.Summary))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing findings: %w", err)
	}
	return nil
}

// AppendJSONLine appends the line Print prints for f in FormatJSON: what
// a json.Encoder without HTML escaping writes, newline included, byte for
// byte, without its reflection (pipeline.Finding.AppendJSON). When f cannot
// be encoded (a year past 9999) it returns dst unchanged and the error.
// Callers that format findings where they are raised (detect scan's
// workers) print the lines with WriteJSONLines.
func AppendJSONLine(dst []byte, f *pipeline.Finding) ([]byte, error) {
	n := len(dst)
	dst, err := f.AppendJSON(dst, false)
	if err != nil {
		return dst[:n], err
	}
	return append(dst, '\n'), nil
}

// Format returns the format p prints in.
func (p *Printer) Format() Format { return p.format }

// WriteJSONLines prints the lines of n findings made by AppendJSONLine,
// as Print prints those findings in FormatJSON. It is for FormatJSON
// printers only.
func (p *Printer) WriteJSONLines(lines []byte, n int) error {
	if n == 0 {
		return nil
	}
	if p.format != FormatJSON {
		return fmt.Errorf("printing findings: JSON lines to a printer of format %d", p.format)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count += n
	if _, err := p.w.Write(lines); err != nil {
		return fmt.Errorf("printing finding: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine keeps a client-supplied string (user agent, username) from
// breaking the table or forging extra lines on a terminal.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
