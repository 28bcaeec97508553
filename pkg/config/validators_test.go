package config

import "testing"

func TestIsUUID(t *testing.T) {
	if !IsUUID("8f2a7c3e-1b2c-4d5e-8f90-a1b2c3d4e5f6") || IsUUID("my-service") || IsUUID("8f2a7c3e1b2c4d5e8f90a1b2c3d4e5f6xxxx") {
		t.Error("isUUID misclassifies")
	}
}
