package rules

import (
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
	files, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	user, err := ReadFiles(paths...)
	if err != nil {
		return nil, err
	}
	return append(files, user...), nil
}
