package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// hostileShapes are BenchmarkHostile's shapes in the order the report lists
// them; a shape the benchmark gains later is listed after them.
var hostileShapes = []string{
	"TokenURI", "TokenDots", "Dots",
	"DeepObject", "DeepArray",
	"EscapeUnicode", "EscapeBackslash", "EscapeQuote",
	"TinyItems", "EmptyItems",
}

// hostileSizes are BenchmarkHostile's body sizes, by row name.
var hostileSizes = []struct {
	name  string
	bytes float64
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// maxHostileGrowth is the requirement: 1 MiB of a shape may cost at most
// this many times the time per byte of 1 KiB of it. A linear path costs
// less per byte at 1 MiB (the fixed cost of a request is spread thinner);
// a path that rescans its input (the old JWT search, which restarted at
// every "eyJ") costs hundreds of times more.
const maxHostileGrowth = 2

// parseNotRun reads the "HostileNotRun <row> <seconds> ..." lines
// BenchmarkHostile prints for a row it did not run because one request of
// it was predicted to take too long: row name to the largest prediction.
func parseNotRun(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readNotRun(f)
}

func readNotRun(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "HostileNotRun" {
			continue
		}
		s, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		out["Hostile/"+f[1]] = max(out["Hostile/"+f[1]], s)
	}
	return out, sc.Err()
}

// growth is how a shape's cost per byte grew from 1 KiB to the largest
// size measured.
type growth struct {
	ratio     float64 // ns/B at size ÷ ns/B at 1 KiB
	size      string  // the size ratio is at: 1MiB, or 64KiB when 1 MiB was not run
	predicted float64 // seconds one 1 MiB request was predicted to take, when not run
}

// ok reports whether the shape meets the requirement: 1 MiB measured and
// within maxHostileGrowth.
func (g growth) ok() bool { return g.size == "1MiB" && g.ratio <= maxHostileGrowth }

func (g growth) String() string {
	s := fmt.Sprintf("%.2f×", g.ratio)
	if g.size != "1MiB" {
		s = fmt.Sprintf("1 MiB not run (one request predicted %.0f s); %s already %.2f×", g.predicted, g.size, g.ratio)
		if g.ratio == 0 {
			s = fmt.Sprintf("1 MiB not run (one request predicted %.0f s)", g.predicted)
		}
	}
	return s
}

// shapeGrowth measures one shape; ok is false when it was not run at all.
func shapeGrowth(res results, notRun map[string]float64, shape string) (g growth, ok bool) {
	base := res.median("Hostile/"+shape+"/1KiB", "ns/B")
	for _, size := range slices.Backward(hostileSizes[1:]) {
		name := "Hostile/" + shape + "/" + size.name
		if p, skipped := notRun[name]; skipped && g.predicted == 0 {
			g.predicted = p
		}
		if v := res.median(name, "ns/B"); v > 0 && base > 0 && g.size == "" {
			g.ratio, g.size = v/base, size.name
		}
	}
	if g.size == "" && g.predicted == 0 {
		return g, false
	}
	if g.predicted > 0 && g.size == "1MiB" {
		g.predicted = 0
	}
	return g, true
}

// shapesRun lists the shapes present in res or notRun, known ones first.
func shapesRun(res results, notRun map[string]float64) []string {
	seen := map[string]bool{}
	var extra []string
	add := func(name string) {
		rest, ok := strings.CutPrefix(name, "Hostile/")
		if !ok {
			return
		}
		shape, _, _ := strings.Cut(rest, "/")
		if !seen[shape] {
			seen[shape] = true
			if !slices.Contains(hostileShapes, shape) {
				extra = append(extra, shape)
			}
		}
	}
	for name := range res {
		add(name)
	}
	for name := range notRun {
		add(name)
	}
	slices.Sort(extra)
	var out []string
	for _, s := range hostileShapes {
		if seen[s] {
			out = append(out, s)
		}
	}
	return append(out, extra...)
}

// hostileWorst returns the shape furthest from the requirement: a shape
// not run at 1 MiB first, then the highest ratio.
func hostileWorst(res results, notRun map[string]float64) (shape string, worst growth, ok bool) {
	score := func(g growth) float64 {
		if g.size != "1MiB" {
			return math.Inf(1)
		}
		return g.ratio
	}
	for _, s := range shapesRun(res, notRun) {
		g, measured := shapeGrowth(res, notRun, s)
		if measured && (!ok || score(g) > score(worst)) {
			shape, worst, ok = s, g, true
		}
	}
	return shape, worst, ok
}

// hostile writes the hostile-input section: ns/B per shape and size, and
// each shape's growth from 1 KiB to 1 MiB.
func hostile(w io.Writer, res results, notRun map[string]float64) {
	shapes := shapesRun(res, notRun)
	if len(shapes) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Hostile inputs through the ingest handler\n\n")
	fmt.Fprintf(w, "What a sender holding a webhook credential can post to make ingest spend more per byte (BenchmarkHostile): ")
	fmt.Fprintf(w, "a requestURI of `eyJ` repeated (TokenURI), a ConfigMap value of `eyJ.` or `a.` repeated (TokenDots, Dots), ")
	fmt.Fprintf(w, "a requestObject nested `{\"a\":…}` or `[[…]]` as deep as the size allows (DeepObject, DeepArray; past encoding/json's 10,000 levels ingest refuses the event, status 400), ")
	fmt.Fprintf(w, "a string of `\\u0041`, `\\\\` or `\\\"` escapes (EscapeUnicode, EscapeBackslash, EscapeQuote), and EventLists of many tiny items: the smallest events ingest's validation accepts, each with its own auditID (TinyItems), and `{}` (EmptyItems, refused item by item where ingest validates events), with the per-request event cap raised to let 1 MiB of them in. ")
	fmt.Fprintf(w, "Every other field is a realistic ResponseComplete event. Each row posts one body of 1 KiB, 64 KiB or 1 MiB through the whole handler (httptest: body read, split, redaction, validation, keys, a producer that acknowledges at once), with max-event-bytes at 4 MiB so that no event is truncated. ")
	fmt.Fprintf(w, "A linear path costs about the same per byte at every size (less at 1 MiB, where the fixed cost of a request is spread thinner); the requirement is that 1 MiB cost at most %d× per byte what 1 KiB does. ", maxHostileGrowth)
	fmt.Fprintf(w, "A row whose one request is predicted (from the smaller sizes) to take longer than the benchmark's -hostile-max-request is not run, and fails.\n\n")
	fmt.Fprintf(w, "| shape | ns/B 1 KiB | ns/B 64 KiB | ns/B 1 MiB | 1 MiB ÷ 1 KiB per byte | status 1 KiB / 64 KiB / 1 MiB | allocated per body byte, 1 MiB | ≤ %d× |\n", maxHostileGrowth)
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---|---:|---|\n")
	for _, shape := range shapes {
		var cells, status []string
		for _, size := range hostileSizes {
			name := "Hostile/" + shape + "/" + size.name
			switch {
			case res[name] != nil:
				cells = append(cells, fmt.Sprintf("%.2f", res.median(name, "ns/B")))
				status = append(status, fmt.Sprintf("%.0f", res.median(name, "status")))
			case notRun[name] > 0:
				cells = append(cells, fmt.Sprintf("not run (predicted %.0f s/request)", notRun[name]))
				status = append(status, "–")
			default:
				cells = append(cells, "–")
				status = append(status, "–")
			}
		}
		alloc := "–"
		if big := "Hostile/" + shape + "/1MiB"; res[big] != nil {
			alloc = fmt.Sprintf("%.1f B", res.median(big, "B/op")/hostileSizes[2].bytes)
		}
		g, measured := shapeGrowth(res, notRun, shape)
		ratio, met := "–", "–"
		if measured {
			ratio = g.String()
			met = map[bool]string{true: "yes", false: "**no**"}[g.ok()]
			if !g.ok() {
				ratio = "**" + ratio + "**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", shape, strings.Join(cells, " | "), ratio, strings.Join(status, " / "), alloc, met)
	}
}
