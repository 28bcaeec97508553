package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// zstdEncoder is shared: EncodeAll is safe for concurrent use, and building
// an encoder allocates its tables, which would dominate small snapshots.
var zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
})

func compress(content []byte, c Compression) ([]byte, error) {
	switch c {
	case CompressionNone:
		return content, nil
	case CompressionGzip:
		var b bytes.Buffer
		b.Grow(len(content) / 4)
		// The gzip header carries no name and a zero mtime, so the same
		// content always compresses to the same bytes.
		w, err := gzip.NewWriterLevel(&b, gzip.DefaultCompression)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if _, err := w.Write(content); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return b.Bytes(), nil
	case CompressionZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return enc.EncodeAll(content, make([]byte, 0, len(content)/4)), nil
	}
	return nil, fmt.Errorf("unknown compression %q (known: none, gzip, zstd)", c)
}

const zstdMinWindowLimit = 8 << 20

// errContentSize says the decompressed content is not the size the manifest
// records; decompression stops one byte past the expected size, so a
// decompression bomb costs at most that much memory.
var errContentSize = errors.New("content size differs from the manifest")

// decompress expands p, which must produce exactly size bytes.
func decompress(p []byte, c Compression, size int64) ([]byte, error) {
	var r io.Reader
	switch c {
	case CompressionNone:
		if int64(len(p)) != size {
			return nil, fmt.Errorf("%w: content is %d bytes, manifest says %d", errContentSize, len(p), size)
		}
		return p, nil
	case CompressionGzip:
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		zr.Multistream(false)
		defer zr.Close()
		r = zr
	case CompressionZstd:
		// The window bound keeps a hostile frame header from making the
		// decoder allocate more than the content can need; small contents
		// still get the 8 MiB window the encoder may declare.
		limit := max(uint64(size)+1, zstdMinWindowLimit)
		zr, err := zstd.NewReader(bytes.NewReader(p),
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(limit),
			zstd.WithDecoderMaxWindow(limit))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("unknown compression %q", c)
	}
	out := bytes.NewBuffer(make([]byte, 0, size+1))
	n, err := out.ReadFrom(io.LimitReader(r, size+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	if n != size {
		return nil, fmt.Errorf("%w: content is %s bytes, manifest says %d", errContentSize, sizeText(n, size), size)
	}
	return out.Bytes(), nil
}

func sizeText(n, size int64) string {
	if n > size {
		return fmt.Sprintf("more than %d", size)
	}
	return fmt.Sprint(n)
}

func encrypt(plain []byte, recipients []age.Recipient) ([]byte, error) {
	var b bytes.Buffer
	// age adds a header (~100 bytes per recipient) and 16 bytes per 64 KiB chunk.
	b.Grow(len(plain) + len(plain)/4096 + 256*len(recipients) + 64)
	w, err := age.Encrypt(&b, recipients...)
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return b.Bytes(), nil
}

// decrypt opens an age payload. limit bounds the plaintext (the compressed
// content can be no larger than the stored object).
func decrypt(p []byte, ids []age.Identity, limit int64) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(p), ids...)
	if err != nil {
		return nil, err
	}
	out := bytes.NewBuffer(make([]byte, 0, len(p)))
	n, err := out.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("plaintext is over %d bytes", limit)
	}
	return out.Bytes(), nil
}
