package storage

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestParseExtraPutParams(t *testing.T) {
	p, err := ParseExtraPutParams(`{"ServerSideEncryption":"aws:kms","SSEKMSKeyId":"arn:aws:kms:eu-west-1:111122223333:key/abc",
		"StorageClass":"STANDARD_IA","ACL":"bucket-owner-full-control","BucketKeyEnabled":true,"CacheControl":"no-cache",
		"Tagging":"team=gw","ObjectLockRetainUntilDate":"2030-01-02T03:04:05Z","Expires":1700000000,"SSEKMSEncryptionContext":null}`)
	if err != nil {
		t.Fatal(err)
	}
	in := p.apply()
	if in.ServerSideEncryption != types.ServerSideEncryptionAwsKms ||
		aws.ToString(in.SSEKMSKeyId) != "arn:aws:kms:eu-west-1:111122223333:key/abc" ||
		in.StorageClass != types.StorageClassStandardIa ||
		in.ACL != types.ObjectCannedACLBucketOwnerFullControl ||
		!aws.ToBool(in.BucketKeyEnabled) ||
		aws.ToString(in.CacheControl) != "no-cache" ||
		aws.ToString(in.Tagging) != "team=gw" ||
		!aws.ToTime(in.ObjectLockRetainUntilDate).Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		aws.ToTime(in.Expires).Unix() != 1700000000 ||
		in.SSEKMSEncryptionContext != nil {
		t.Fatalf("applied input = %+v", in)
	}
	want := []string{"ACL", "BucketKeyEnabled", "CacheControl", "Expires", "ObjectLockRetainUntilDate", "SSEKMSKeyId", "ServerSideEncryption", "StorageClass", "Tagging"}
	if !slices.Equal(p.Names(), want) {
		t.Errorf("Names() = %v, want %v", p.Names(), want)
	}
	// apply gives independent copies: setting managed fields on one does
	// not leak into the next Put.
	a := p.apply()
	a.Key = aws.String("k")
	if b := p.apply(); b.Key != nil {
		t.Error("apply shares state between calls")
	}

	empty, err := ParseExtraPutParams("  ")
	if err != nil || len(empty.Names()) != 0 {
		t.Errorf("empty params = %v, %v", empty.Names(), err)
	}

	bad := map[string]string{
		`[1]`:                                   "must be a JSON object",
		`null`:                                  "got null",
		`{"a":1} x`:                             "trailing data",
		`{bad json`:                             "must be a JSON object",
		`{"Foo":"x"}`:                           `"Foo" is not supported; supported (AWS SDK PutObject names): ACL, BucketKeyEnabled`,
		`{"serverSideEncryption":"AES256"}`:     `"serverSideEncryption" is not supported`,
		`{"ServerSideEncryption":"rot13"}`:      `value "rot13" is not one of: AES256`,
		`{"StorageClass":5}`:                    "must be a JSON string",
		`{"BucketKeyEnabled":"maybe"}`:          "must be true or false",
		`{"ObjectLockRetainUntilDate":"soon"}`:  "RFC 3339",
		`{"ContentType":"text/plain"}`:          "kongfb sets the content type",
		`{"Metadata":{"a":"b"}}`:                "kongfb sets the object metadata",
		`{"Bucket":"other"}`:                    "storage URL",
		`{"SSECustomerKey":"c2VjcmV0LWtleQ=="}`: "SSE-C is not supported",
	}
	for in, want := range bad {
		_, err := ParseExtraPutParams(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExtraPutParams(%s) error = %v, want it to contain %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "c2VjcmV0LWtleQ") {
			t.Errorf("error echoes a secret value: %v", err)
		}
	}
	if _, err := ParseExtraPutParams(`{"BucketKeyEnabled":"true"}`); err != nil {
		t.Errorf("string boolean refused: %v", err)
	}
}
