package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

func settingCases() []testCase {
	return []testCase{
		{"MissingSettingIsNotFound", testSettingMissing},
		{"PutSettingRoundTripsAndOverwrites", testSettingRoundTrip},
		{"EmptySettingValueIsStoredNotMissing", testSettingEmptyValue},
		{"CreateSettingRefusesAnExistingKey", testCreateSetting},
		{"CreateSettingUnderConcurrencyHasOneWinner", testCreateSettingConcurrent},
	}
}

func testCreateSetting(t *testing.T, s p2core.Store) {
	ctx := t.Context()
	ok(t, s.CreateSetting(ctx, "account.alice", []byte("1")), "CreateSetting")
	wantSetting(t, s, "account.alice", []byte("1"))
	isErr(t, s.CreateSetting(ctx, "account.alice", []byte("2")), p2core.ErrConflict, "CreateSetting of an existing key")
	wantSetting(t, s, "account.alice", []byte("1"))
	ok(t, s.PutSetting(ctx, "flag", []byte("x")), "PutSetting")
	isErr(t, s.CreateSetting(ctx, "flag", []byte("y")), p2core.ErrConflict, "CreateSetting over PutSetting")
	ok(t, s.CreateSetting(ctx, "account.alice2", nil), "CreateSetting of a key sharing a prefix")
}

func testCreateSettingConcurrent(t *testing.T, s p2core.Store) {
	const n = 100
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) { errs <- s.CreateSetting(t.Context(), "account.bob", []byte{byte(i)}) }(i)
	}
	wins := 0
	var winner byte
	for i := 0; i < n; i++ {
		err := <-errs
		switch {
		case err == nil:
			wins++
		case errors.Is(err, p2core.ErrConflict):
		default:
			t.Fatalf("CreateSetting: unexpected error %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent CreateSetting calls succeeded, want exactly 1", wins, n)
	}
	got, err := s.Setting(t.Context(), "account.bob")
	ok(t, err, "Setting")
	winner = got[0]
	if len(got) != 1 || int(winner) >= n {
		t.Fatalf("stored value %v is none of the written ones", got)
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
