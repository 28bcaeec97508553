package proxy

import "math/rand/v2"

const hexDigits = "0123456789abcdef"

// appendRequestID appends a fresh request id: 32 lowercase hex characters
// (128 random bits), the shape of nginx's $request_id that Kong uses for
// X-Kong-Request-Id.
//
// math/rand/v2's top-level functions read the runtime's per-thread ChaCha8
// state: no lock, no allocation and no syscall, which matters because this
// runs on every request. The ids only need to be unique, not secret.
func appendRequestID(dst []byte) []byte {
	a, b := rand.Uint64(), rand.Uint64()
	var buf [32]byte
	for i := 15; i >= 0; i-- {
		buf[i] = hexDigits[a&0xf]
		a >>= 4
	}
	for i := 31; i >= 16; i-- {
		buf[i] = hexDigits[b&0xf]
		b >>= 4
	}
	return append(dst, buf[:]...)
}
