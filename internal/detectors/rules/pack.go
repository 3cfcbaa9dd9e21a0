package rules

import (
	"bytes"
	"context"
	"embed"
	"fmt"
)

// pack is the shipped default rule pack. "all:" takes in default/.gitkeep,
// so that the package builds while the directory holds no rule file yet;
// DefaultFiles then returns none.
//
//go:embed all:default
var pack embed.FS

// DefaultFiles returns the shipped rule files, sorted by name: load them
// before any user file so that user files can override shipped rules.
func DefaultFiles() ([]File, error) {
	files, err := ReadFS(pack, "default/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading the default rule pack: %w", err)
	}
	return files, nil
}

// LoadDefault compiles the shipped default pack alone.
func LoadDefault(ctx context.Context) (*Set, error) {
	files, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	return LoadContext(ctx, files...)
}

// LoadWithDefault compiles the default pack followed by the files at paths.
func LoadWithDefault(ctx context.Context, paths ...string) (*Set, error) {
	files, err := filesWithDefault(paths)
	if err != nil {
		return nil, err
	}
	return LoadContext(ctx, files...)
}

func filesWithDefault(paths []string) ([]File, error) {
	return filesAfter(DefaultFiles, paths)
}

// filesAfter returns what first returns followed by the files at paths.
func filesAfter(first func() ([]File, error), paths []string) ([]File, error) {
	files, err := first()
	if err != nil {
		return nil, err
	}
	user, err := ReadFiles(paths...)
	if err != nil {
		return nil, err
	}
	return append(files, user...), nil
}

// DefaultRuntimeFiles is DefaultFiles with each rule's examples blanked
// out, for processes that judge events and never run examples (detect
// scan and detect run): examples are 83 % of the pack's bytes, and
// parsing their YAML was a third of loading the pack, which every detect
// scan pays before its first event. Lines are blanked, not removed, so
// that positions in messages stay those of the files; the examples stay
// in DefaultFiles, which `detect rules test` and the tests run.
func DefaultRuntimeFiles() ([]File, error) {
	files, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	for i := range files {
		files[i].Data = blankExamples(files[i].Data)
	}
	return files, nil
}

// LoadRuntimeWithDefault is LoadWithDefault with the default pack's
// examples left out (DefaultRuntimeFiles); the files at paths keep theirs.
func LoadRuntimeWithDefault(ctx context.Context, paths ...string) (*Set, error) {
	files, err := filesAfter(DefaultRuntimeFiles, paths)
	if err != nil {
		return nil, err
	}
	return LoadContext(ctx, files...)
}

// blankExamples returns data with every "examples:" block of the pack's
// layout blanked: the key's line and every line after it that is empty, a
// comment, or indented deeper than the key. It is written for the
// shipped files, whose layout TestDefaultRuntimeFiles checks; it is not a
// YAML parser and is never run on a user's file.
func blankExamples(data []byte) []byte {
	out := make([]byte, 0, len(data))
	blanking, keyIndent := false, 0
	for len(data) > 0 {
		line := data
		next := []byte(nil)
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, next = data[:i], data[i+1:]
		}
		data = next
		trimmed := bytes.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		content := bytes.TrimSpace(trimmed)
		if blanking && len(content) > 0 && content[0] != '#' && indent <= keyIndent {
			blanking = false
		}
		if !blanking && string(content) == "examples:" {
			blanking, keyIndent = true, indent
		}
		if !blanking {
			out = append(out, line...)
		}
		if next != nil {
			out = append(out, '\n')
		}
	}
	return out
}
