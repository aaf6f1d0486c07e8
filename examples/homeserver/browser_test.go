package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// browserStep bounds one step of the browser test (a click and the page's
// answer), so a page that never answers fails the test instead of hanging
// CI; the steps take a few seconds even on a loaded machine.
const browserStep = 2 * time.Minute

// findBrowser returns the Chromium to drive, or skips the test with how to
// get one; with P2KIT_BROWSER=1 (as in .ci/run) a missing browser fails.
func findBrowser(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("P2KIT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "no Chromium found: install it (apt-get install -y chromium) or set P2KIT_CHROMIUM to its path, then run go test -run TestBrowser ./examples/homeserver"
	if os.Getenv("P2KIT_BROWSER") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// page is one user's browser context with the web client open.
type page struct {
	t    *testing.T
	name string
	fid  string // after logging in
	ctx  context.Context

	mu  sync.Mutex
	log []string // the page's console messages and exceptions
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage log:\n%s", p.name, err, p.pageLog())
	}
}

func (p *page) eval(js string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, js, err)
	}
	return v
}

// poll waits until the JavaScript expression js is truthy and returns its
// value as a string.
func (p *page) poll(js string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[string]("((v) => v && String(v))("+js+")", chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v\npage log:\n%s", p.name, js, err, p.pageLog())
	}
	return v
}

func (p *page) pageLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// text returns the text of the element with that id.
func (p *page) text(id string) string {
	p.t.Helper()
	return p.eval(fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// set types value into the input with that id.
func (p *page) set(id, value string) {
	p.t.Helper()
	p.do(chromedp.SetValue(chromedp.ID(id), value))
}

// press clicks the button with that id once it is enabled, then waits for
// the step's status line (id status) to settle, and returns its state
// ("ok" or "error") and text.
func (p *page) press(button, status string) (string, string) {
	p.t.Helper()
	p.poll(fmt.Sprintf(`!document.getElementById(%q).disabled`, button))
	// Mark the status line so that only the answer to this click counts.
	p.eval(fmt.Sprintf(`document.getElementById(%q).dataset.state = "clicked"`, status))
	p.do(chromedp.Click(chromedp.ID(button)))
	return p.settled(status)
}

// settled waits for a status line to say ok or error.
func (p *page) settled(status string) (string, string) {
	p.t.Helper()
	v := p.poll(fmt.Sprintf(`(() => { const e = document.getElementById(%q); return (e.dataset.state === "ok" || e.dataset.state === "error") && e.dataset.state + " " + e.textContent; })()`, status))
	state, text, _ := strings.Cut(v, " ")
	return state, text
}

// mustOK presses a button and fails unless the step succeeds.
func (p *page) mustOK(button, status string) string {
	p.t.Helper()
	state, text := p.press(button, status)
	if state != "ok" {
		p.t.Fatalf("%s: %s: %s %s\npage log:\n%s", p.name, button, state, text, p.pageLog())
	}
	p.t.Logf("%s: %s", p.name, text)
	return text
}

// TestBrowserWebClient drives the web client at / in headless Chromium as
// two users in two independent browser contexts, through the whole
// polyproto-core flow: accounts, OpenPGP key and ID-Cert verified in the
// page, a refused KeyPackage upload, KeyPackages, a federation token, a
// claim checked against the claimed user's ID-Certs, an MLS group, and a
// message each way through the demo relay; then a forged claim answer
// (intercepted in the browser) that the page refuses.
func TestBrowserWebClient(t *testing.T) {
	chromium := findBrowser(t)
	// P2KIT_WEBCLIENT_URL drives a server that is already running, such as
	// go run ./examples/homeserver, with fresh usernames.
	url, suffix := os.Getenv("P2KIT_WEBCLIENT_URL"), ""
	if url == "" {
		url = startServer(t, t.TempDir()).url
	} else {
		suffix = fmt.Sprintf("-%d", time.Now().UnixNano()%1_000_000)
	}

	// A fresh profile, removed after the browser has gone: Chromium's
	// helper processes can still write to it for a moment after the
	// browser exits, which would fail t.TempDir's clean-up.
	profile, err := os.MkdirTemp("", "p2kit-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}

	open := func(name string) *page {
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		p := &page{t: t, name: name, ctx: ctx}
		if err := chromedp.Listen(ctx, func(ev any) {
			var line string
			switch ev := ev.(type) {
			case *runtime.EventConsoleAPICalled:
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				line = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
			case *runtime.EventExceptionThrown:
				line = "exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error()
			default:
				return
			}
			p.mu.Lock()
			p.log = append(p.log, line)
			p.mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		p.do(chromedp.Navigate(url + "/"))
		p.poll(`document.body.dataset.ready === "1"`)
		return p
	}
	alice, bob := open("alice"+suffix), open("bob"+suffix)

	for _, p := range []*page{alice, bob} {
		p.set("username", p.name)
		p.set("password", "correct horse "+p.name)
		p.mustOK("b-register", "st-account")
		p.fid, _, _ = strings.Cut(p.text("who"), " ")
	}

	// A KeyPackage upload before the session has an ID-Cert: the server's
	// refusal is shown as is.
	alice.mustOK("b-genkey", "st-key")
	state, text := alice.press("b-upload", "st-kp")
	if state != "error" || !strings.Contains(text, "409 P2CORE_NO_ID_CERT:") {
		t.Fatalf("alice: upload before the ID-Cert shows %s %q, want the server's P2CORE_NO_ID_CERT", state, text)
	}
	t.Logf("alice: refused as expected: %s", text)

	serverFpr := serverFingerprint(t, url)
	for _, p := range []*page{alice, bob} {
		if p != alice {
			p.mustOK("b-genkey", "st-key")
		}
		if got := p.mustOK("b-idcert", "st-key"); !strings.Contains(got, "ID-Cert verified in the browser") {
			t.Fatalf("%s: %q", p.name, got)
		}
		// The page shows what it verified: the real issuer and this session.
		if got := p.text("c-issuer"); got != serverFpr {
			t.Errorf("%s: issuer shown %q, the server key is %s", p.name, got, serverFpr)
		}
		if who, sess := p.text("who"), p.text("c-session"); sess == "" || !strings.HasSuffix(who, "session "+sess) {
			t.Errorf("%s: ID-Cert session %q, page is %q", p.name, sess, who)
		}
		if p.text("c-serial") == "" || p.text("c-expires") == "never" {
			t.Errorf("%s: serial %q, expiry %q", p.name, p.text("c-serial"), p.text("c-expires"))
		}
		p.set("kp-count", "3")
		p.mustOK("b-upload", "st-kp")
		p.poll(`document.getElementById("supply").dataset.available === "3"`)
	}

	// Route 1: the token the page shows is real (route 7 redeems it once).
	bob.mustOK("b-token", "st-token")
	redeem(t, url, bob.text("token"), bob.fid)
	bob.poll(`document.querySelector('#event-log li[data-type="FEDERATION_TOKEN_ISSUED"]') !== null`)

	// bob claims alice's KeyPackage, checked against her ID-Certs in the page.
	bob.set("peer", alice.name)
	bob.mustOK("b-lookup", "st-peer")
	if got := bob.mustOK("b-claim", "st-peer"); !strings.Contains(got, "Claimed 1 KeyPackage") {
		t.Fatalf("bob: claim: %q", got)
	}
	// alice watches her supply fall live (LOW_KEY_PACKAGES over /events).
	alice.poll(`document.querySelector('#event-log li[data-type="LOW_KEY_PACKAGES"]') !== null`)
	alice.poll(`document.getElementById("supply").dataset.available === "2"`)

	// The group: bob adds alice; she joins from the relayed Welcome.
	alice.eval(`document.getElementById("st-group").dataset.state = "waiting"`)
	bob.mustOK("b-group", "st-group")
	if state, text := alice.settled("st-group"); state != "ok" || !strings.Contains(text, "Joined") {
		t.Fatalf("alice: joining: %s %s\npage log:\n%s", state, text, alice.pageLog())
	}
	t.Logf("alice: %s", alice.text("st-group"))

	bob.set("message", "hello alice, from bob")
	bob.mustOK("b-send", "st-group")
	got := alice.poll(`(() => { const m = document.querySelector("#messages li.theirs"); return m && m.textContent; })()`)
	if got != bob.fid+"hello alice, from bob" {
		t.Fatalf("alice decrypted %q", got)
	}
	alice.set("message", "hi bob")
	alice.mustOK("b-send", "st-group")
	got = bob.poll(`(() => { const m = document.querySelector("#messages li.theirs"); return m && m.textContent; })()`)
	if got != alice.fid+"hi bob" {
		t.Fatalf("bob decrypted %q", got)
	}

	// The screenshots go to $P2KIT_SCREENSHOTS, or a new folder in the
	// system's temporary folder, kept after the test.
	shots := os.Getenv("P2KIT_SCREENSHOTS")
	if shots == "" {
		var err error
		if shots, err = os.MkdirTemp("", "p2kit-webclient-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*page{alice, bob} {
		ctx, cancel := context.WithTimeout(p.ctx, browserStep)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, p.name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The page on a phone-sized screen.
	alice.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	ctx, cancel := context.WithTimeout(alice.ctx, browserStep)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shots, "alice-phone.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of both pages in %s", shots)
	fmt.Fprintf(os.Stderr, "browser test: screenshots of both pages in %s\n", shots)

	// The page's own check of claimed KeyPackages, against a server that
	// lies: bob's next claim is answered with a KeyPackage that verifies
	// but is signed by a key none of alice's ID-Certs certifies.
	_, forger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kp := mlstest.NewEd25519(forger)
	kp.Identity = []byte(alice.fid)
	forged, err := kp.Build()
	if err != nil {
		t.Fatal(err)
	}
	fake, _ := json.Marshal([]string{base64.StdEncoding.EncodeToString(forged)})
	aliceID := strings.Fields(alice.text("who"))[3] // "FID · user ID · session S"
	bob.intercept("*/p2core/keypackage/"+aliceID+"*", fake)
	state, text = bob.press("b-claim", "st-peer")
	if state != "error" || !strings.Contains(text, "1 of 1 claimed KeyPackages failed the check") {
		t.Fatalf("bob: a claimed KeyPackage signed by an uncertified key: %s %q", state, text)
	}
	if got := bob.text("peer-kps"); !strings.Contains(got, "is certified by none of "+alice.fid+"'s current ID-Certs") {
		t.Fatalf("bob: the refused KeyPackage is shown as %q", got)
	}
	if bob.enabled("b-group") {
		t.Fatal("bob: a group can be created with the refused KeyPackage")
	}
	t.Logf("bob: refused a forged claim: %s", text)
}

// intercept answers the page's next request matching pattern with a 200
// JSON body, as a lying server would, without reaching the server.
func (p *page) intercept(pattern string, body []byte) {
	p.t.Helper()
	paused := chromedp.Events(p.ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(p.ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: pattern}}}); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(p.ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
				RequestID: ev.RequestID, ResponseCode: 200, Body: body,
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}},
			})
			_, _ = chromedp.Call(p.ctx, fetch.Disable, cdp.Empty{})
			return
		}
	}()
}

// enabled reports whether the button with that id can be clicked.
func (p *page) enabled(id string) bool {
	p.t.Helper()
	return p.eval(fmt.Sprintf(`String(!document.getElementById(%q).disabled)`, id)) == "true"
}

// serverFingerprint reads the server key from route 10 with go-crypto.
func serverFingerprint(t *testing.T, url string) string {
	t.Helper()
	var b64 string
	getJSON(t, url+"/p2core/key/server", &b64)
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := openpgp.ReadKeyRing(bytes.NewReader(raw))
	if err != nil || len(keys) != 1 {
		t.Fatalf("server key: %v (%d keys)", err, len(keys))
	}
	return fmt.Sprintf("%x", keys[0].PrimaryKey.Fingerprint)
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// redeem redeems a federation token as https://foreign.example would and
// checks it names fid.
func redeem(t *testing.T, url, token, fid string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token, "server": "https://foreign.example"})
	resp, err := http.Post(url+"/p2core/token/redeem", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		FID string `json:"fid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.FID != fid {
		t.Fatalf("redeeming the page's token: %s, %v, fid %q", resp.Status, err, out.FID)
	}
}
