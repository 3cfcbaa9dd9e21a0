package credential

import "bytes"

var b64Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	const url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(url); i++ {
		t[url[i]] = int8(i)
	}
	return t
}()

// jwtHeaderAt reports whether a JWT header can start at v[i]: its first
// three base64url characters decode to '{' followed by a quote or white
// space, and a fourth segment character follows. It looks at four bytes,
// so trying it at every position stays linear.
func jwtHeaderAt(v []byte, i int) bool {
	if i+4 > len(v) || v[i] != 'e' || !isSegment(v[i+3]) {
		return false
	}
	x, y := b64Value[v[i+1]], b64Value[v[i+2]]
	if x < 0 || y < 0 {
		return false
	}
	b0 := byte(b64Value['e'])<<2 | byte(x)>>4
	b1 := byte(x&15)<<4 | byte(y)>>2
	return b0 == '{' && (b1 == '"' || isSpace(b1))
}

// hasJWTHeader reports whether a JWT header can start anywhere in v. A
// token is only found from a header, so FindJWTs need not walk the
// segments of a string without one (a host name, a version, a dotted
// annotation key), which most strings with dots are. It visits each 'e'
// once.
func hasJWTHeader(v []byte) bool {
	for i := 0; i < len(v); i++ {
		j := bytes.IndexByte(v[i:], 'e')
		if j < 0 {
			return false
		}
		if i += j; jwtHeaderAt(v, i) {
			return true
		}
	}
	return false
}

// FindJWTs calls yield with the bounds of every JWT in v: runs of segments joined by dots (white space allowed
// around a dot) in which a segment holding a JWT header is followed by a
// payload segment of two or more characters and a third segment, possibly
// empty (alg "none" tokens end in a dot). Everything from the header to
// the end of the run is the token: a JWE's further segments, or text glued
// to the signature, go with it.
func FindJWTs(v []byte, yield func(start, end int)) {
	if bytes.IndexByte(v, '.') < 0 || !hasJWTHeader(v) {
		return
	}
	for i := 0; i < len(v); {
		if !isSegment(v[i]) {
			i++
			continue
		}
		start := -1
		// The two segments before the current one: the earlier's header
		// candidate, the later's header candidate and length.
		prev2Header, prevHeader, prevLen, segments := -1, -1, 0, 0
		complete := func(header, length int) {
			if start < 0 && segments >= 2 && prev2Header >= 0 && prevLen >= 2 {
				start = prev2Header
			}
			prev2Header, prevHeader, prevLen = prevHeader, header, length
			segments++
		}
		j := i
		for {
			segStart, header := j, -1
			for j < len(v) && isSegment(v[j]) {
				if header < 0 && jwtHeaderAt(v, j) {
					header = j
				}
				j++
			}
			complete(header, j-segStart)
			k := j
			for k < len(v) && isSpace(v[k]) {
				k++
			}
			if k >= len(v) || v[k] != '.' {
				break
			}
			k++
			for k < len(v) && isSpace(v[k]) {
				k++
			}
			j = k
			if j >= len(v) || !isSegment(v[j]) {
				complete(-1, 0) // the empty segment after a trailing dot
				break
			}
		}
		if start >= 0 {
			yield(start, j)
		}
		i = max(j, i+1)
	}
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// isSegment reports a byte of a JWT segment: base64url or padding.
func isSegment(c byte) bool { return isB64URL(c) || c == '=' }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
