package main

import (
	"fmt"

	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// How detect scan prints each finding id once (see scanner.printed).
//
// On an incident's logs about half the events raise a finding, and the
// merge of a parallel scan, which runs alone while the workers judge, was
// spending a tenth of the scan's CPU printing them: encoding each finding
// from strings the workers had written on the other core, and deduplicating
// by string-keyed map. With JSON output each worker now formats the
// findings it raises while they are in its cache (formatLines) and notes
// each id's key; the merge only looks the key up and copies the line.

// verdictCounts counts events by the stage gate's verdict: an array
// rather than a map, as it is counted per event (the merge of a parallel
// scan counts every line the workers skipped).
type verdictCounts [pipeline.StageDuplicate + 1]int

// findingKey is the key a finding id is deduplicated by: the 16 bytes of
// pipeline.FindingID's 32 lowercase hex digits. ok is false for any other
// id, which is deduplicated as a string: two ids have the same key only
// if they are the same string.
type findingKey struct {
	sum [16]byte
	ok  bool
}

// unhex maps a lowercase hex digit to its value and every other byte to
// 0xff: uppercase digits would give two strings one key.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// keyOf returns the key of a finding id.
func keyOf(id string) findingKey {
	var k findingKey
	if len(id) != 2*len(k.sum) {
		return k
	}
	var bad byte
	for i := range k.sum {
		hi, lo := unhex[id[2*i]], unhex[id[2*i+1]]
		bad |= hi | lo
		k.sum[i] = hi<<4 | lo
	}
	k.ok = bad <= 0xf
	return k
}

// firstPrint reports whether no finding with id (key k, keyOf(id)) was
// printed before, and notes it printed.
func (s *scanner) firstPrint(k findingKey, id string) bool {
	// One hash and probe for both the test and the insert.
	if k.ok {
		n := len(s.printed)
		s.printed[k.sum] = struct{}{}
		return len(s.printed) > n
	}
	n := len(s.printedOther)
	s.printedOther[id] = struct{}{}
	return len(s.printedOther) > n
}

// print prints the findings whose id has not been printed before.
func (s *scanner) print(findings []pipeline.Finding) error {
	if s.json {
		for i := range findings {
			f := &findings[i]
			if err := s.addLine(f, keyOf(f.ID), nil); err != nil {
				return err
			}
		}
		return s.flushLines()
	}
	s.toPrint = s.toPrint[:0]
	for i := range findings {
		f := &findings[i]
		if s.firstPrint(keyOf(f.ID), f.ID) {
			s.toPrint = append(s.toPrint, *f)
		}
	}
	return s.printer.Print(s.toPrint)
}

// addLine adds f's JSON line to s.lines unless its id (key k) was printed
// before: line, which a worker formatted with console.AppendJSONLine,
// when it is not empty, or else f formatted now. When f cannot be
// formatted it writes the lines before and returns the error, as
// console.Printer.Print does.
func (s *scanner) addLine(f *pipeline.Finding, k findingKey, line []byte) error {
	if !s.firstPrint(k, f.ID) {
		return nil
	}
	if len(line) > 0 {
		s.lines = append(s.lines, line...)
	} else {
		var err error
		if s.lines, err = console.AppendJSONLine(s.lines, f); err != nil {
			if werr := s.flushLines(); werr != nil {
				return werr
			}
			return fmt.Errorf("printing finding: %w", err)
		}
	}
	s.linesN++
	return nil
}

// flushLines writes the lines addLine added.
func (s *scanner) flushLines() error {
	err := s.printer.WriteJSONLines(s.lines, s.linesN)
	s.lines, s.linesN = s.lines[:0], 0
	return err
}

// lineRef locates the JSON line a worker formatted for a finding in its
// buffer of the chunk's lines (scanChunk.jsonLines), with the key of the
// finding's id. An empty line (start == end) is a finding that could not
// be formatted: the merge formats it again, for the error.
type lineRef struct {
	key        findingKey
	start, end int32
}

// formatLines appends the JSON lines of fs to lines, and a lineRef for
// each to refs.
func formatLines(lines []byte, refs []lineRef, fs []pipeline.Finding) ([]byte, []lineRef) {
	for i := range fs {
		start := len(lines)
		lines, _ = console.AppendJSONLine(lines, &fs[i])
		refs = append(refs, lineRef{key: keyOf(fs[i].ID), start: int32(start), end: int32(len(lines))})
	}
	return lines, refs
}

// addFormatted adds the lines of event i of c to s.lines: the first nw of
// its findings, which worker w raised, from the lines it formatted, the
// others (first-seen findings the merge judged) formatted now.
func (s *scanner) addFormatted(c *scanChunk, i int, nw int) error {
	var refs []lineRef
	var lines []byte
	if nw > 0 {
		w := c.shard[i]
		at := int(c.refAt[i])
		refs, lines = c.refs[w][at:at+nw], c.jsonLines[w]
	}
	for k := range c.findings[i] {
		f := &c.findings[i][k]
		if k < len(refs) {
			r := refs[k]
			if err := s.addLine(f, r.key, lines[r.start:r.end]); err != nil {
				return err
			}
			continue
		}
		if err := s.addLine(f, keyOf(f.ID), nil); err != nil {
			return err
		}
	}
	return nil
}
