package storage

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// reservedPrefix starts the names the file backend uses for its own files
// (temporary files, metadata sidecars, the lock file). Keys with a segment
// starting with it are refused on every backend so that a key valid on S3
// is valid on file:// too.
const reservedPrefix = ".kongfb-"

// maxKeyLen is S3's limit on a full object key, in bytes.
const maxKeyLen = 1024

// normalizePath removes dot segments and merges repeated slashes, like
// Kong's uri normalize(path, true) applied to "<prefix>/<version>/config.json".
// The result has no leading slash; a trailing slash is kept when the input
// had one (or ended in a dot segment) and the result is not empty. escapes
// reports a ".." that would climb above the start.
func normalizePath(p string) (out string, escapes bool) {
	if p == "" {
		return "", false
	}
	segs := strings.Split(p, "/")
	stack := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			if last {
				trailing = true
			}
		case "..":
			if len(stack) == 0 {
				escapes = true
			} else {
				stack = stack[:len(stack)-1]
			}
			if last {
				trailing = true
			}
		default:
			stack = append(stack, s)
			if last {
				trailing = false
			}
		}
	}
	out = strings.Join(stack, "/")
	if trailing && out != "" {
		out += "/"
	}
	return out, escapes
}

// cleanKey validates and normalises an object key relative to a prefix.
func cleanKey(key string) (string, error) {
	if err := checkKeyChars(key); err != nil {
		return "", err
	}
	k, escapes := normalizePath(key)
	switch {
	case escapes:
		return "", fmt.Errorf("%w %q: \"..\" climbs above the storage prefix", ErrInvalidKey, key)
	case k == "":
		return "", fmt.Errorf("%w %q: empty after normalisation", ErrInvalidKey, key)
	case strings.HasSuffix(k, "/"):
		return "", fmt.Errorf("%w %q: an object key cannot end with \"/\"", ErrInvalidKey, key)
	}
	if err := checkReserved(k, key); err != nil {
		return "", err
	}
	return k, nil
}

// cleanListPrefix normalises a List prefix. Unlike a key it may be empty or
// end with "/" (Kong lists "<prefix>/<version>/election/").
func cleanListPrefix(prefix string) (string, error) {
	if err := checkKeyChars(prefix); err != nil {
		return "", err
	}
	p, escapes := normalizePath(prefix)
	if escapes {
		return "", fmt.Errorf("%w prefix %q: \"..\" climbs above the storage prefix", ErrInvalidKey, prefix)
	}
	if err := checkReserved(p, prefix); err != nil {
		return "", err
	}
	return p, nil
}

func checkKeyChars(key string) error {
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidKey, key)
	}
	if strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("%w %q: contains a NUL byte", ErrInvalidKey, key)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidKey, len(key), maxKeyLen)
	}
	return nil
}

func checkReserved(k, orig string) error {
	for seg := range strings.SplitSeq(k, "/") {
		if strings.HasPrefix(seg, reservedPrefix) {
			return fmt.Errorf("%w %q: names starting with %q are reserved", ErrInvalidKey, orig, reservedPrefix)
		}
	}
	return nil
}

// joinKey puts a store prefix (normalised, no trailing slash) in front of a
// clean relative key or list prefix.
func joinKey(prefix, rel string) string {
	if prefix == "" {
		return rel
	}
	return prefix + "/" + rel
}
