package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// PutParams are parsed extra PutObject parameters (Kong's
// cluster_fallback_export_s3_config). The zero value adds nothing.
type PutParams struct {
	template s3.PutObjectInput
	names    []string // the names set, sorted, for logs (values may be sensitive)
}

// Names lists the parameters set, sorted.
func (p *PutParams) Names() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.names)
}

type paramSetter func(v json.RawMessage, in *s3.PutObjectInput) error

// putParamSetters maps the AWS SDK (and Kong / AWS JS SDK) PutObject
// parameter names kongfb applies to the field they set.
var putParamSetters = map[string]paramSetter{
	"ACL":                       enumParam(func(in *s3.PutObjectInput, v types.ObjectCannedACL) { in.ACL = v }),
	"BucketKeyEnabled":          boolParam(func(in *s3.PutObjectInput, v bool) { in.BucketKeyEnabled = &v }),
	"CacheControl":              stringParam(func(in *s3.PutObjectInput, v string) { in.CacheControl = &v }),
	"ContentDisposition":        stringParam(func(in *s3.PutObjectInput, v string) { in.ContentDisposition = &v }),
	"ContentEncoding":           stringParam(func(in *s3.PutObjectInput, v string) { in.ContentEncoding = &v }),
	"ContentLanguage":           stringParam(func(in *s3.PutObjectInput, v string) { in.ContentLanguage = &v }),
	"ExpectedBucketOwner":       stringParam(func(in *s3.PutObjectInput, v string) { in.ExpectedBucketOwner = &v }),
	"Expires":                   timeParam(func(in *s3.PutObjectInput, v time.Time) { in.Expires = &v }),
	"GrantFullControl":          stringParam(func(in *s3.PutObjectInput, v string) { in.GrantFullControl = &v }),
	"GrantRead":                 stringParam(func(in *s3.PutObjectInput, v string) { in.GrantRead = &v }),
	"GrantReadACP":              stringParam(func(in *s3.PutObjectInput, v string) { in.GrantReadACP = &v }),
	"GrantWriteACP":             stringParam(func(in *s3.PutObjectInput, v string) { in.GrantWriteACP = &v }),
	"ObjectLockLegalHoldStatus": enumParam(func(in *s3.PutObjectInput, v types.ObjectLockLegalHoldStatus) { in.ObjectLockLegalHoldStatus = v }),
	"ObjectLockMode":            enumParam(func(in *s3.PutObjectInput, v types.ObjectLockMode) { in.ObjectLockMode = v }),
	"ObjectLockRetainUntilDate": timeParam(func(in *s3.PutObjectInput, v time.Time) { in.ObjectLockRetainUntilDate = &v }),
	"RequestPayer":              enumParam(func(in *s3.PutObjectInput, v types.RequestPayer) { in.RequestPayer = v }),
	"SSEKMSEncryptionContext":   stringParam(func(in *s3.PutObjectInput, v string) { in.SSEKMSEncryptionContext = &v }),
	"SSEKMSKeyId":               stringParam(func(in *s3.PutObjectInput, v string) { in.SSEKMSKeyId = &v }),
	"ServerSideEncryption":      enumParam(func(in *s3.PutObjectInput, v types.ServerSideEncryption) { in.ServerSideEncryption = v }),
	"StorageClass":              enumParam(func(in *s3.PutObjectInput, v types.StorageClass) { in.StorageClass = v }),
	"Tagging":                   stringParam(func(in *s3.PutObjectInput, v string) { in.Tagging = &v }),
	"WebsiteRedirectLocation":   stringParam(func(in *s3.PutObjectInput, v string) { in.WebsiteRedirectLocation = &v }),
}

// managedPutParams are PutObject parameters kongfb sets itself on every
// call. Kong silently keeps its own value for these; refusing them is
// clearer than ignoring them.
var managedPutParams = map[string]string{
	"Bucket":            "the bucket comes from the storage URL",
	"Key":               "the key is chosen by kongfb",
	"Body":              "the body is the exported config",
	"ContentType":       "kongfb sets the content type of each object",
	"ContentLength":     "computed from the body",
	"ContentMD5":        "computed by the client when needed",
	"Metadata":          "kongfb sets the object metadata",
	"IfMatch":           "conditional writes are decided per call",
	"IfNoneMatch":       "conditional writes are decided per call",
	"ChecksumAlgorithm": "checksums are managed by the client",
	"ChecksumCRC32":     "checksums are managed by the client",
	"ChecksumCRC32C":    "checksums are managed by the client",
	"ChecksumSHA1":      "checksums are managed by the client",
	"ChecksumSHA256":    "checksums are managed by the client",
	"SSECustomerAlgorithm": "SSE-C needs the key on every read, which importers do not have; " +
		"use ServerSideEncryption aws:kms or AES256",
	"SSECustomerKey":    "SSE-C is not supported; use ServerSideEncryption aws:kms or AES256",
	"SSECustomerKeyMD5": "SSE-C is not supported; use ServerSideEncryption aws:kms or AES256",
}

// SupportedPutParams lists the parameter names ParseExtraPutParams accepts.
func SupportedPutParams() []string {
	return slices.Sorted(maps.Keys(putParamSetters))
}

// ParseExtraPutParams parses Kong's cluster_fallback_export_s3_config: a
// JSON object whose names are AWS SDK PutObject parameter names. "" gives
// an empty set. Errors name the parameter but never echo string values
// (they may be key ids or grants).
func ParseExtraPutParams(js string) (*PutParams, error) {
	p := &PutParams{}
	if strings.TrimSpace(js) == "" {
		return p, nil
	}
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("extra S3 put parameters must be a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("extra S3 put parameters: trailing data after the JSON object")
	}
	if raw == nil {
		return nil, errors.New("extra S3 put parameters must be a JSON object, got null")
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		v := raw[name]
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue // like an unset parameter
		}
		if why, ok := managedPutParams[name]; ok {
			return nil, fmt.Errorf("extra S3 put parameter %q cannot be set: %s", name, why)
		}
		set, ok := putParamSetters[name]
		if !ok {
			return nil, fmt.Errorf("extra S3 put parameter %q is not supported; supported (AWS SDK PutObject names): %s",
				name, strings.Join(SupportedPutParams(), ", "))
		}
		if err := set(v, &p.template); err != nil {
			return nil, fmt.Errorf("extra S3 put parameter %q: %w", name, err)
		}
		p.names = append(p.names, name)
	}
	return p, nil
}

// apply returns a PutObjectInput with the extra parameters set; the
// caller then sets the managed fields.
func (p *PutParams) apply() s3.PutObjectInput {
	if p == nil {
		return s3.PutObjectInput{}
	}
	return p.template // fields are pointers to values never mutated
}

func stringParam(set func(*s3.PutObjectInput, string)) paramSetter {
	return func(v json.RawMessage, in *s3.PutObjectInput) error {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return errors.New("must be a JSON string")
		}
		set(in, s)
		return nil
	}
}

func boolParam(set func(*s3.PutObjectInput, bool)) paramSetter {
	return func(v json.RawMessage, in *s3.PutObjectInput) error {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return errors.New("must be true or false")
			}
			if b, err = strconv.ParseBool(s); err != nil {
				return fmt.Errorf("must be true or false, got %q", s)
			}
		}
		set(in, b)
		return nil
	}
}

// timeParam accepts an RFC 3339 string or a number of seconds since the
// epoch, the forms the AWS JS SDK takes.
func timeParam(set func(*s3.PutObjectInput, time.Time)) paramSetter {
	return func(v json.RawMessage, in *s3.PutObjectInput) error {
		var s string
		if json.Unmarshal(v, &s) == nil {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return fmt.Errorf("must be an RFC 3339 time (2006-01-02T15:04:05Z) or epoch seconds, got %q", s)
			}
			set(in, t)
			return nil
		}
		var n json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return errors.New("must be an RFC 3339 time string or epoch seconds")
		}
		f, err := n.Float64()
		if err != nil {
			return fmt.Errorf("bad number %s", n)
		}
		set(in, time.Unix(0, int64(f*1e9)).UTC())
		return nil
	}
}

// enumValue is an AWS SDK enum type: a string type with Values().
type enumValue[E any] interface {
	~string
	Values() []E
}

func enumParam[E enumValue[E]](set func(*s3.PutObjectInput, E)) paramSetter {
	return func(v json.RawMessage, in *s3.PutObjectInput) error {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return errors.New("must be a JSON string")
		}
		var zero E
		allowed := zero.Values()
		if !slices.Contains(allowed, E(s)) {
			names := make([]string, len(allowed))
			for i, a := range allowed {
				names[i] = string(a)
			}
			return fmt.Errorf("value %q is not one of: %s", s, strings.Join(names, ", "))
		}
		set(in, E(s))
		return nil
	}
}
