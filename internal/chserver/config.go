package chserver

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// configParams are the per-instance values written into the derived
// config.xml.
type configParams struct {
	Dir                          string
	TCPPort, HTTPPort, InterPort int
	UsersPath                    string
}

// replacedElements are the top-level elements of the packaged config.xml whose
// values point at /var/lib/clickhouse or fixed ports and so must be
// rewritten, mapped to a function of the instance parameters. Elements listed
// with an empty value are dropped: listen_host is re-added once (loopback
// only), and the TLS ports would make the server fail on the missing
// certificate.
func replacedElements(p configParams) map[string]string {
	d := p.Dir + string(filepath.Separator)
	return map[string]string{
		"path":                  d + "data" + string(filepath.Separator),
		"tmp_path":              d + "tmp" + string(filepath.Separator),
		"user_files_path":       d + "user_files" + string(filepath.Separator),
		"format_schema_path":    d + "format_schemas" + string(filepath.Separator),
		"tcp_port":              strconv.Itoa(p.TCPPort),
		"http_port":             strconv.Itoa(p.HTTPPort),
		"interserver_http_port": strconv.Itoa(p.InterPort),
		"users_config":          p.UsersPath,
		"listen_host":           "",
		"https_port":            "",
		"tcp_port_secure":       "",
		"mysql_port":            "",
		"logger":                "",
	}
}

// requiredElements must be in every derived config even when the packaged
// one lacks them, else the instance would fall back to a default port or
// /var/lib/clickhouse. format_schema_path is only rewritten when present.
var requiredElements = []string{
	"path", "tmp_path", "user_files_path", "tcp_port", "http_port", "interserver_http_port", "users_config",
}

// deriveConfig rewrites the packaged config.xml for one test instance. It
// works on the token stream rather than with text substitution because the
// packaged file has nested elements with the same names (distributed_ddl has
// its own <path>) and commented-out examples of the ones we rewrite.
func deriveConfig(src []byte, p configParams) ([]byte, error) {
	repl := replacedElements(p)
	dec := xml.NewDecoder(bytes.NewReader(src))
	var out bytes.Buffer
	enc := xml.NewEncoder(&out)
	depth := 0
	skipDepth := 0 // >0 while skipping a replaced element's content
	seen := make(map[string]bool)
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parsing packaged config.xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if skipDepth > 0 {
				continue
			}
			if depth == 2 {
				if v, ok := repl[t.Name.Local]; ok {
					seen[t.Name.Local] = true
					skipDepth = depth
					if v != "" {
						if err := encodeElement(enc, t.Name.Local, v); err != nil {
							return nil, err
						}
					}
					continue
				}
			}
		case xml.EndElement:
			depth--
			if skipDepth > 0 {
				if depth < skipDepth {
					skipDepth = 0
				}
				continue
			}
			if depth == 0 {
				// Closing the root: add the elements the source lacked and
				// those that replace the dropped ones.
				for _, name := range requiredElements {
					if !seen[name] {
						if err := encodeElement(enc, name, repl[name]); err != nil {
							return nil, err
						}
					}
				}
				if err := appendInstanceElements(enc, p); err != nil {
					return nil, err
				}
			}
		case xml.Comment:
			continue
		case xml.CharData, xml.ProcInst, xml.Directive:
			if skipDepth > 0 {
				continue
			}
		}
		if err := enc.EncodeToken(xml.CopyToken(tok)); err != nil {
			return nil, fmt.Errorf("writing derived config.xml: %w", err)
		}
	}
	if err := enc.Flush(); err != nil {
		return nil, fmt.Errorf("writing derived config.xml: %w", err)
	}
	return out.Bytes(), nil
}

// appendInstanceElements writes the elements that were dropped and must
// exist once: a loopback-only listener and a logger writing into the
// instance directory.
func appendInstanceElements(enc *xml.Encoder, p configParams) error {
	if err := encodeElement(enc, "listen_host", "127.0.0.1"); err != nil {
		return err
	}
	type logger struct {
		// Level is "information" so that a failed start leaves enough in the
		// log tail to diagnose it; the volume is a few lines per query.
		Level    string `xml:"level"`
		Log      string `xml:"log"`
		ErrorLog string `xml:"errorlog"`
		Size     string `xml:"size"`
		Count    int    `xml:"count"`
	}
	l := logger{
		Level:    "information",
		Log:      filepath.Join(p.Dir, "log", "clickhouse-server.log"),
		ErrorLog: filepath.Join(p.Dir, "log", "clickhouse-server.err.log"),
		Size:     "100M",
		Count:    1,
	}
	if err := enc.EncodeElement(l, xml.StartElement{Name: xml.Name{Local: "logger"}}); err != nil {
		return fmt.Errorf("writing derived config.xml: %w", err)
	}
	return nil
}

func encodeElement(enc *xml.Encoder, name, value string) error {
	if err := enc.EncodeElement(value, xml.StartElement{Name: xml.Name{Local: name}}); err != nil {
		return fmt.Errorf("writing derived config.xml: %w", err)
	}
	return nil
}

// deriveUsers adds settings to the default profile of the packaged
// users.xml.
//
// poll_interval is how often (seconds) a connection handler wakes up while
// waiting for the client's next packet. On SIGTERM, 18.16 waits for every
// handler to notice, so with the default of 10 an idle pooled connection
// (clickhouse-go keeps them) held every Stop for 10 s. Tests stop servers
// often and run no queries long enough to need a longer interval.
func deriveUsers(src []byte) ([]byte, error) {
	dec := xml.NewDecoder(bytes.NewReader(src))
	var out bytes.Buffer
	enc := xml.NewEncoder(&out)
	var stack []string
	added := false
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parsing packaged users.xml: %w", err)
		}
		if _, ok := tok.(xml.Comment); ok {
			continue
		}
		if err := enc.EncodeToken(xml.CopyToken(tok)); err != nil {
			return nil, fmt.Errorf("writing derived users.xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
			if len(stack) == 3 && stack[1] == "profiles" && stack[2] == "default" {
				if err := encodeElement(enc, "poll_interval", "1"); err != nil {
					return nil, err
				}
				added = true
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if err := enc.Flush(); err != nil {
		return nil, fmt.Errorf("writing derived users.xml: %w", err)
	}
	if !added {
		return nil, errors.New("packaged users.xml has no profiles/default to add poll_interval to")
	}
	return out.Bytes(), nil
}

// writeConfig derives config.xml and users.xml from srcDir into dir
// and returns the path of the derived config.xml.
func writeConfig(srcDir string, p configParams) (string, error) {
	users, err := os.ReadFile(filepath.Join(srcDir, "users.xml"))
	if err != nil {
		return "", fmt.Errorf("reading packaged users.xml: %w", err)
	}
	if users, err = deriveUsers(users); err != nil {
		return "", err
	}
	p.UsersPath = filepath.Join(p.Dir, "users.xml")
	if err := os.WriteFile(p.UsersPath, users, 0o600); err != nil {
		return "", fmt.Errorf("writing users.xml: %w", err)
	}
	src, err := os.ReadFile(filepath.Join(srcDir, "config.xml"))
	if err != nil {
		return "", fmt.Errorf("reading packaged config.xml: %w", err)
	}
	cfg, err := deriveConfig(src, p)
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.Dir, "config.xml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return "", fmt.Errorf("writing config.xml: %w", err)
	}
	return path, nil
}
