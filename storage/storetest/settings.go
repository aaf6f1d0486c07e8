package storetest

import (
	"bytes"
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

func settingCases() []testCase {
	return []testCase{
		{"MissingSettingIsNotFound", testSettingMissing},
		{"PutSettingRoundTripsAndOverwrites", testSettingRoundTrip},
		{"EmptySettingValueIsStoredNotMissing", testSettingEmptyValue},
	}
}

func testSettingMissing(t *testing.T, s p2core.Store) {
	_, err := s.Setting(t.Context(), "token_generation")
	isErr(t, err, p2core.ErrNotFound, "Setting of a missing key")
}

func wantSetting(t *testing.T, s p2core.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Setting(t.Context(), key)
	ok(t, err, "Setting "+key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Setting %q: got %q, want %q", key, got, want)
	}
}

func testSettingRoundTrip(t *testing.T, s p2core.Store) {
	ctx := t.Context()
	ok(t, s.PutSetting(ctx, "token_generation", []byte("enabled")), "PutSetting")
	ok(t, s.PutSetting(ctx, "other", []byte{0, 1, 2, 0xff}), "PutSetting other")
	wantSetting(t, s, "token_generation", []byte("enabled"))
	ok(t, s.PutSetting(ctx, "token_generation", []byte("off")), "PutSetting overwrite")
	wantSetting(t, s, "token_generation", []byte("off"))
	wantSetting(t, s, "other", []byte{0, 1, 2, 0xff})
	_, err := s.Setting(ctx, "token_generation2")
	isErr(t, err, p2core.ErrNotFound, "Setting of a key that only shares a prefix")
}

func testSettingEmptyValue(t *testing.T, s p2core.Store) {
	ok(t, s.PutSetting(t.Context(), "flag", []byte{}), "PutSetting empty")
	wantSetting(t, s, "flag", nil)
}
