package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

func TestWorkloadOf(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		token   string
		want    Workload
		ok      bool
		wantErr string
	}{
		{"no annotations", nil, "sa", Workload{}, false, ""},
		{"unrelated annotation", map[string]string{"x": "y"}, "sa", Workload{}, false, ""},
		{"profile id", map[string]string{AnnotationProfileID: "Profile-1"}, "sa", Workload{ProfileID: "Profile-1", ServiceAccountToken: "sa"}, true, ""},
		{"profile name", map[string]string{AnnotationProfileName: " pullers "}, "sa", Workload{ProfileName: "pullers", ServiceAccountToken: "sa"}, true, ""},
		{"profile name with a space", map[string]string{AnnotationProfileName: "team pullers"}, "sa", Workload{ProfileName: "team pullers", ServiceAccountToken: "sa"}, true, ""},
		{"empty value", map[string]string{AnnotationProfileID: " "}, "sa", Workload{}, false, ""},
		{"both", map[string]string{AnnotationProfileID: "Profile-1", AnnotationProfileName: "n"}, "sa", Workload{}, false, "both"},
		{"no token", map[string]string{AnnotationProfileID: "Profile-1"}, "", Workload{}, false, "tokenAttributes"},
		{"control characters", map[string]string{AnnotationProfileID: "Profile-1\x1b[31m\n"}, "sa", Workload{}, false, "no trusted profile id or name"},
		{"huge value", map[string]string{AnnotationProfileName: strings.Repeat("n", 250<<10)}, "sa", Workload{}, false, "no trusted profile id or name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, ok, err := WorkloadOf(Request{ServiceAccountAnnotations: tt.ann, ServiceAccountToken: tt.token})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				// An untrusted value is quoted escaped and bounded.
				if len(err.Error()) > 600 || strings.ContainsAny(err.Error(), "\x1b\n") {
					t.Fatalf("err of %d bytes, or with control characters: %q", len(err.Error()), secretCut(err.Error()))
				}
				return
			}
			if err != nil || ok != tt.ok || w != tt.want {
				t.Fatalf("got %+v, %v, %v; want %+v, %v", w, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func secretCut(s string) string { return s[:min(len(s), 200)] }

func TestWorkloadNeverFallsBack(t *testing.T) {
	nodeCalls := 0
	boom := errors.New("IAM rejected the exchange")
	p := &Plugin{
		Node: token.SourceFunc(func(ctx context.Context) (token.Token, error) {
			nodeCalls++
			return token.Token{AccessToken: "node", Expiry: time.Now().Add(time.Hour)}, nil
		}),
		Workload: func(w Workload) (token.Source, error) {
			return token.SourceFunc(func(context.Context) (token.Token, error) {
				if w.ProfileID == "good" {
					return token.Token{AccessToken: "workload:" + w.ServiceAccountToken}, nil
				}
				return token.Token{}, boom
			}), nil
		},
	}
	tokenFor := func(req Request) (token.Token, error) {
		src, err := p.source(req)
		if err != nil {
			return token.Token{}, err
		}
		return src.Token(context.Background())
	}
	ann := func(id string) map[string]string { return map[string]string{AnnotationProfileID: id} }
	if tok, err := tokenFor(Request{ServiceAccountToken: "sa1", ServiceAccountAnnotations: ann("good")}); err != nil || tok.AccessToken != "workload:sa1" {
		t.Fatalf("annotated: %v %v", tok.AccessToken, err)
	}
	if _, err := tokenFor(Request{ServiceAccountToken: "sa1", ServiceAccountAnnotations: ann("bad")}); !errors.Is(err, boom) {
		t.Fatalf("failed exchange: err = %v", err)
	}
	if nodeCalls != 0 {
		t.Fatal("the node identity was used for an annotated service account")
	}
	if tok, err := tokenFor(Request{ServiceAccountToken: "sa1"}); err != nil || tok.AccessToken != "node" {
		t.Fatalf("un-annotated: %v %v", tok.AccessToken, err)
	}
	p.Workload = nil
	if _, err := tokenFor(Request{ServiceAccountToken: "sa1", ServiceAccountAnnotations: ann("good")}); err == nil || !strings.Contains(err.Error(), "not enabled") || nodeCalls != 1 {
		t.Fatalf("workload identities off: err = %v, node calls %d", err, nodeCalls)
	}
}
