package main

import (
	"strings"
	"testing"
)

func TestParseBenchNames(t *testing.T) {
	f := func(line, want string) {
		t.Helper()
		res, err := parseBench(strings.NewReader(line))
		if err != nil {
			t.Fatal(err)
		}
		if res[want] == nil {
			t.Fatalf("%q: parsed %v, want %q", line, res, want)
		}
	}
	// -test.cpu 1 leaves names without the -N suffix; a sub-benchmark's
	// own '-' must survive either way.
	f("BenchmarkDecodeEvent \t 100 \t 4338 ns/op", "DecodeEvent")
	f("BenchmarkDecodeEvent-2 \t 100 \t 4338 ns/op", "DecodeEvent")
	f("BenchmarkScanner/Valid/fast-json \t 100 \t 4338 ns/op", "Scanner/Valid/fast-json")
	f("BenchmarkScanner/Valid/fast-json-8 \t 100 \t 4338 ns/op", "Scanner/Valid/fast-json")
}

func TestShapeGrowth(t *testing.T) {
	const out = `
BenchmarkHostile/Linear/1KiB 100 1 ns/op 40.0 ns/B 200 status
BenchmarkHostile/Linear/64KiB 100 1 ns/op 12.0 ns/B 200 status
BenchmarkHostile/Linear/1MiB 100 1 ns/op 10.0 ns/B 200 status
BenchmarkHostile/Linear/1MiB 100 1 ns/op 11.0 ns/B 200 status
BenchmarkHostile/Linear/1MiB 100 1 ns/op 90.0 ns/B 200 status
BenchmarkHostile/Quadratic/1KiB 100 1 ns/op 10.0 ns/B 200 status
BenchmarkHostile/Quadratic/64KiB 100 1 ns/op 640.0 ns/B 200 status
HostileNotRun Quadratic/1MiB 163.8 s/request predicted from the smaller sizes, over -hostile-max-request=5s
BenchmarkHostile/Grows/1KiB 100 1 ns/op 10.0 ns/B 200 status
BenchmarkHostile/Grows/64KiB 100 1 ns/op 12.0 ns/B 200 status
BenchmarkHostile/Grows/1MiB 100 1 ns/op 25.0 ns/B 200 status
`
	res, err := parseBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	notRun, err := readNotRun(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	f := func(shape string, wantRatio float64, wantSize string, wantOK bool) {
		t.Helper()
		g, measured := shapeGrowth(res, notRun, shape)
		if !measured || g.ratio != wantRatio || g.size != wantSize || g.ok() != wantOK {
			t.Fatalf("%s: %+v (measured %v, ok %v), want ratio %v at %s, ok %v", shape, g, measured, g.ok(), wantRatio, wantSize, wantOK)
		}
	}
	f("Linear", 11.0/40, "1MiB", true) // the median of three rounds, not the outlier
	f("Quadratic", 64, "64KiB", false)
	f("Grows", 2.5, "1MiB", false)
	if _, measured := shapeGrowth(res, notRun, "Absent"); measured {
		t.Fatal("a shape not in the output is measured")
	}
	shape, worst, ok := hostileWorst(res, notRun)
	if !ok || shape != "Quadratic" || worst.predicted != 163.8 {
		t.Fatalf("worst %s %+v, want Quadratic, not run at 1 MiB", shape, worst)
	}
}
