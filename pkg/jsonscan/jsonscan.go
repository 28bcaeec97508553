// Package jsonscan delimits the members of a JSON object and the elements
// of a JSON array in one pass, without decoding or validating the values.
//
// It serves code that decodes only some parts of a large document, or that
// recognises parts it has already decoded by their exact bytes: a config
// push whose entities are mostly unchanged (pkg/config.Reparser), or a
// reconfigure envelope whose config_table is validated later by the config
// parser (pkg/cluster). Whoever uses a value's text must validate it (by
// decoding it, or by matching it against text that decoded before): the
// scanner only guarantees that, for valid JSON, each slice is exactly one
// value.
package jsonscan

import "encoding/json"

// Member is one key of an object and its value's JSON text.
type Member struct {
	Key string
	Raw []byte
}

// Members are an object's members in document order, repeated keys
// included.
type Members []Member

// Get returns the last value given for key (the one encoding/json keeps),
// nil when there is none.
func (ms Members) Get(key string) []byte {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Key == key {
			return ms[i].Raw
		}
	}
	return nil
}

// Object cuts a JSON object (b, surrounding whitespace allowed) into its
// members without decoding the values. It checks the object's own syntax
// (braces, colons, commas, keys, nothing after it) and decodes the keys; a
// value's text is only delimited, not validated. false means "not a
// well-formed object". The Raw slices alias b.
func Object(b []byte) (Members, bool) {
	s := scanner{b: b}
	s.ws()
	if !s.eat('{') {
		return nil, false
	}
	var out Members
	s.ws()
	if s.eat('}') {
		s.ws()
		return out, s.i == len(b)
	}
	for {
		s.ws()
		start := s.i
		if !s.skipString() {
			return nil, false
		}
		var key string
		if err := json.Unmarshal(b[start:s.i], &key); err != nil {
			return nil, false
		}
		s.ws()
		if !s.eat(':') {
			return nil, false
		}
		s.ws()
		vs := s.i
		if !s.skipValue() {
			return nil, false
		}
		out = append(out, Member{key, b[vs:s.i]})
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return nil, false
		}
		s.ws()
		return out, s.i == len(b)
	}
}

// Array cuts a JSON array (b is exactly the array, no surrounding
// whitespace) into its elements' texts, checking the array's own syntax as
// Object does. The slices alias b.
func Array(b []byte) ([][]byte, bool) {
	s := scanner{b: b}
	if !s.eat('[') {
		return nil, false
	}
	var out [][]byte
	s.ws()
	if s.eat(']') {
		return out, s.i == len(b)
	}
	for {
		s.ws()
		start := s.i
		if !s.skipValue() {
			return nil, false
		}
		out = append(out, b[start:s.i])
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat(']') {
			return nil, false
		}
		return out, s.i == len(b)
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// skipString moves past a string starting at s.i.
func (s *scanner) skipString() bool {
	if !s.eat('"') {
		return false
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return true
		default:
			s.i++
		}
	}
	return false
}

// skipValue moves past one value starting at s.i: a string, a nested
// object or array (to its matching close), or a scalar (to the next
// delimiter). It does not validate what it skips.
func (s *scanner) skipValue() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	case ',', '}', ']', ':':
		return false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.i > start
		}
		s.i++
	}
	return s.i > start
}
