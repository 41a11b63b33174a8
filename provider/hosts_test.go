package provider

import (
	"slices"
	"strings"
	"testing"
)

func TestRegistryHostAndServes(t *testing.T) {
	hs, err := NewHostSet([]string{"registry.example.com", "127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image  string
		host   string // "" means no valid host
		served bool
	}{
		{"us.icr.io/team/app", "us.icr.io", true},
		{"us.icr.io/team/app:1.2", "us.icr.io", true},
		{"us.icr.io/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "us.icr.io", true},
		{"icr.io/team/app", "icr.io", true},
		{"private.icr.io/team/app", "private.icr.io", true},
		{"private.us.icr.io/team/app", "private.us.icr.io", true},
		{"jp2.icr.io/a/b/c/d", "jp2.icr.io", true},
		{"registry.bluemix.net/ns/app", "registry.bluemix.net", true},
		{"registry.eu-gb.bluemix.net/ns/app", "registry.eu-gb.bluemix.net", true},
		{"US.ICR.IO/team/app", "us.icr.io", true},
		{"us.icr.io:443/team/app", "us.icr.io:443", true},
		{"us.icr.io:5000/team/app", "us.icr.io:5000", false},
		{"https://us.icr.io/team/app", "us.icr.io", true},
		{"registry.example.com/x", "registry.example.com", true},
		{"127.0.0.1:5000/x", "127.0.0.1:5000", true},
		{"127.0.0.1:5001/x", "127.0.0.1:5001", false},
		{"127.0.0.1/x", "127.0.0.1", false},
		// Never served.
		{"cp.icr.io/cp/app", "cp.icr.io", false},
		{"docker.io/library/nginx", "docker.io", false},
		{"nginx", "docker.io", false},
		{"library/nginx", "docker.io", false},
		{"localhost/app", "localhost", false},
		{"us.icr.io.evil.com/team/app", "us.icr.io.evil.com", false},
		{"evilicr.io/team/app", "evilicr.io", false},
		{"icr.io.evil.com/x", "icr.io.evil.com", false},
		{"xx.icr.io/team/app", "xx.icr.io", false},
		{"private.xx.icr.io/team/app", "private.xx.icr.io", false},
		{"private.private.icr.io/x", "private.private.icr.io", false},
		{"a.us.icr.io/x", "a.us.icr.io", false},
		{"us.icr.io./team/app", "", false},
		{"user@us.icr.io/team/app", "", false},
		{"us.icr.io@evil.com/team/app", "", false},
		{"us.icr.io%2f@evil.com/x", "", false},
		{"us.іcr.io/team/app", "", false}, // Cyrillic і
		{"xn--us-icr-io/x", "docker.io", false},
		{"xn--s-icr-8ya.io/x", "xn--s-icr-8ya.io", false},
		{"us.icr.io /team", "", false},
		{"icr.io/\f0", "", false}, // any Unicode space or control character, anywhere
		{"us.icr.io/team/app\v:1", "", false},
		{"us.icr.io/team/app\u0085:1", "", false},
		{"us.icr.io/team\u00a0/app", "", false},
		{" us.icr.io/team/app\n", "us.icr.io", true}, // surrounding space (run by hand) is trimmed
		{"us.icr.io/team\x00/app", "", false},
		{"us.icr.io/team\x7f/app", "", false},
		{"us.icr.io\\team/app", "", false},
		{"u\u212a.icr.io/team/app", "", false}, // Kelvin sign: strings.ToLower makes it "k"
		{"U\u212A.ICR.IO/team/app", "", false},
		{"", "", false},
		{"*.icr.io/x", "", false},
		{"us.icr.io:99999/x", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			host, ok := RegistryHost(tt.image)
			if tt.host == "" {
				if ok {
					t.Fatalf("RegistryHost(%q) = %q, want no valid host", tt.image, host)
				}
			} else if !ok || host != tt.host {
				t.Fatalf("RegistryHost(%q) = %q, %v; want %q", tt.image, host, ok, tt.host)
			}
			if got := ok && hs.Serves(host); got != tt.served {
				t.Fatalf("served(%q) = %v, want %v", tt.image, got, tt.served)
			}
		})
	}
}

func TestDefaultHosts(t *testing.T) {
	hosts := DefaultHosts()
	for _, want := range []string{"icr.io", "private.icr.io", "us.icr.io", "private.us.icr.io", "in2.icr.io", "private.ca2.icr.io", "registry.bluemix.net", "registry.au-syd.bluemix.net"} {
		if !slices.Contains(hosts, want) {
			t.Errorf("DefaultHosts lacks %s", want)
		}
	}
	if slices.Contains(hosts, "cp.icr.io") {
		t.Error("DefaultHosts contains cp.icr.io")
	}
	if got, want := len(hosts), 2+2*12+5; got != want {
		t.Errorf("len(DefaultHosts) = %d, want %d", got, want)
	}
}

func TestNewHostSetRejects(t *testing.T) {
	for _, bad := range []string{"*.example.com", "https://r.example.com", "r.example.com/path", "user@r.example.com", "r.example.com:0", "r.example.com:x", "r.example.com.", "exa mple.com", "\u212a.example.com", "bücher.example"} {
		if _, err := NewHostSet([]string{bad}); err == nil {
			t.Errorf("NewHostSet(%q) accepted it", bad)
		}
	}
	hs, err := NewHostSet([]string{" Registry.Example.COM ", "[::1]:5000", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !hs.Serves("registry.example.com") || !hs.Serves("[::1]:5000") {
		t.Errorf("normalised extras not served: %v", hs.Hosts())
	}
	for _, h := range []string{"u\u212a.icr.io", "U\u212A.ICR.IO:443", "us.icr.io\u0131"} {
		if hs.Serves(h) {
			t.Errorf("Serves(%q): a non-ASCII host is served", h)
		}
	}
}

func TestServerHost(t *testing.T) {
	tests := []struct {
		in, host string
		ok       bool
	}{
		{"us.icr.io", "us.icr.io", true},
		{"  us.icr.io\n", "us.icr.io", true},
		{"US.ICR.IO", "us.icr.io", true},
		{"us.icr.io:443", "us.icr.io:443", true},
		{"https://us.icr.io", "us.icr.io", true},
		{"HTTPS://us.icr.io/v2/", "us.icr.io", true},
		{"http://us.icr.io", "", false}, // a token is never handed out for plain http
		{"http://127.0.0.1:5000/v2/", "127.0.0.1:5000", true},
		{"http://localhost:5000", "localhost:5000", true},
		{"[us.icr.io]:443", "", false},
		{"https://999.1.1.1", "", false},
		{"us.icr.io/team/app", "us.icr.io", true},
		{"https://us.icr.io?x=1", "us.icr.io", true},
		{"127.0.0.1:5000", "127.0.0.1:5000", true},
		{"[::1]:5000", "[::1]:5000", true},
		{"https://index.docker.io/v1/", "index.docker.io", true},
		{"registry", "registry", true},
		{"Registry:5000", "registry:5000", true},
		{"reg_istry", "", false}, // a single label is a host, so it must be a valid one
		{"-registry", "", false},
		{"", "", false},
		{"https://", "", false},
		{"user@us.icr.io", "", false},
		{"https://user:pw@us.icr.io", "", false},
		{"ftp://us.icr.io", "", false},
		{"us.icr.io.", "", false},
		{"*.icr.io", "", false},
		{"us icr io", "", false},
		{"us.icr.io:99999", "", false},
		{`us.icr.io\evil`, "", false},
		{"u\u212a.icr.io", "", false}, // Kelvin sign, which strings.ToLower makes an ASCII k
		{"\u212a", "", false},
		{"regi\fstry", "", false},
		{"us.icr.io\x00", "", false},
	}
	for _, tt := range tests {
		host, ok := ServerHost(tt.in)
		if host != tt.host || ok != tt.ok {
			t.Errorf("ServerHost(%q) = %q, %v; want %q, %v", tt.in, host, ok, tt.host, tt.ok)
		}
	}
}

// TestOneHostRule: the image reference parser (kubelet mode, doctor) and
// the server URL parser (credential helper) give the same host, or none,
// for every look-alike, and agree on whether it is served.
func TestOneHostRule(t *testing.T) {
	hs, err := NewHostSet([]string{"registry.example.com:443"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{
		"us.icr.io", "US.ICR.IO", "us.icr.io:443", "icr.io", "private.us.icr.io", "cp.icr.io",
		"us.icr.io.evil.com", "evilicr.io", "icr.io.evil.com", "xx.icr.io", "a.us.icr.io",
		"us.icr.io.", "[us.icr.io]:443", "us.icr.io:99999", "u\u212a.icr.io", "us.іcr.io",
		"999.1.1.1", "127.0.0.1:5000", "[::1]:5000", "registry.example.com", "registry.example.com:443",
		"user@us.icr.io", "us.icr.io%2f@evil.com", "*.icr.io", "evil.example/x:",
	} {
		t.Run(h, func(t *testing.T) {
			imgHost, imgOK := RegistryHost(h + "/team/app")
			img, imgErr := ParseImage(h + "/team/app:1")
			for _, u := range []string{h, "https://" + h + "/v2/", h + "/team/app"} {
				srvHost, srvOK := ServerHost(u)
				if srvOK != imgOK || srvHost != imgHost {
					t.Errorf("ServerHost(%q) = %q, %v; RegistryHost = %q, %v", u, srvHost, srvOK, imgHost, imgOK)
				}
				if srvOK && hs.Serves(srvHost) != hs.Serves(imgHost) {
					t.Errorf("served differently: %q", u)
				}
			}
			if (imgErr == nil) != imgOK || img.Host != imgHost && imgOK {
				t.Errorf("ParseImage = %+v, %v; RegistryHost = %q, %v", img, imgErr, imgHost, imgOK)
			}
		})
	}
	// A scheme is only ever leading: this is evil.example's image.
	if h, ok := RegistryHost("evil.example/x://us.icr.io/app"); !ok || h != "evil.example" {
		t.Errorf("RegistryHost = %q, %v", h, ok)
	}
	if img, err := ParseImage("evil.example/x://us.icr.io/app"); err == nil && img.Host != "evil.example" {
		t.Errorf("ParseImage host %q", img.Host)
	}
}

func TestServesWithHTTPSPort(t *testing.T) {
	hs, err := NewHostSet([]string{"registry.example.com:443", "other.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"registry.example.com", "registry.example.com:443", "other.example.com:443", "us.icr.io:443"} {
		if !hs.Serves(h) {
			t.Errorf("%s is not served", h)
		}
	}
	for _, want := range []string{"registry.example.com", "registry.example.com:443"} {
		if !slices.Contains(hs.Hosts(), want) {
			t.Errorf("auth keys %v lack %s: the kubelet matches them port by port", hs.Hosts(), want)
		}
	}
	for bad, problem := range map[string]string{
		"https://r.example.com": "is a URL",
		"[r.example.com]:443":   "brackets",
		"999.1.1.1":             "not a valid host name",
	} {
		if _, err := NewHostSet([]string{bad}); err == nil || !strings.Contains(err.Error(), problem) {
			t.Errorf("NewHostSet(%q): %v, want %q", bad, err, problem)
		}
	}
}

func TestParseImage(t *testing.T) {
	tests := []struct{ in, host, repo, ref string }{
		{"us.icr.io/team/app", "us.icr.io", "team/app", "latest"},
		{"us.icr.io/team/app:1.2", "us.icr.io", "team/app", "1.2"},
		{"127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app", "v1"},
		{"icr.io/team/sub/app@sha256:abc", "icr.io", "team/sub/app", "sha256:abc"},
		{"nginx", "docker.io", "nginx", "latest"},
		{"https://us.icr.io/team/app", "us.icr.io", "team/app", "latest"},
	}
	for _, tt := range tests {
		got, err := ParseImage(tt.in)
		if err != nil || got.Host != tt.host || got.Repository != tt.repo || got.Ref != tt.ref {
			t.Errorf("ParseImage(%q) = %+v, %v", tt.in, got, err)
		}
	}
	for _, bad := range []string{"us.icr.io/", "us.icr.io/team/app:", ""} {
		if _, err := ParseImage(bad); err == nil {
			t.Errorf("ParseImage(%q) accepted it", bad)
		}
	}
}
