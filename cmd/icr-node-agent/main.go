// Command icr-node-agent is the DaemonSet's long-running companion of
// icr-credential-provider: it refreshes the node identity's token in the
// plugin's shared cache ahead of the plugin, and publishes the node's
// pull-credential health as the Node condition ICRCredentialsReady, Events
// and Prometheus metrics. This file is wiring only; see package agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/logs/klogflags"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/agent"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

const name = "icr-node-agent"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr, os.LookupEnv))
}

func run(args []string, stderr io.Writer, lookup func(string) (string, bool)) int {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	gfs := flag.NewFlagSet(name, flag.ContinueOnError)
	klogflags.Init(gfs)
	fs.AddGoFlagSet(gfs)
	kubeletConfig := fs.String("kubelet-config", "/etc/kubernetes/icr-credential-provider/config.yaml", "the kubelet's CredentialProviderConfig (file or directory) that install wrote")
	binDir := fs.String("bin-dir", "/opt/icr-credential-provider/bin", "the kubelet's credential provider bin dir (for the binary check)")
	nodeName := fs.String("node-name", "", "this node's name (the DaemonSet passes spec.nodeName)")
	lead := fs.Duration("lead", agent.DefaultLead, "refresh this long before the plugin would, plus a per-node jitter of up to half of it")
	interval := fs.Duration("check-interval", agent.DefaultCheckInterval, "how often the health checks run")
	metricsAddr := fs.String("metrics-address", "127.0.0.1:9464", "address of the Prometheus /metrics endpoint; empty: none")
	probeRegistry := fs.String("probe-registry", "", "a registry host whose token exchange the health checks include (e.g. us.icr.io)")
	probeImage := fs.String("probe-image", "", "an image whose manifest the health checks fetch (e.g. us.icr.io/ns/probe:1)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for running outside the cluster; default: in-cluster")
	idle := fs.Bool("idle", false, "do nothing until stopped: a placeholder container (the image has no pause binary)")
	if err := fs.Parse(args); err != nil {
		return fail(stderr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *idle {
		<-ctx.Done()
		return 0
	}
	if err := config.ApplyEnv(fs, lookup); err != nil {
		return fail(stderr, err)
	}
	if *nodeName == "" {
		*nodeName, _ = lookup("NODE_NAME")
	}
	if *nodeName == "" {
		return fail(stderr, errors.New("no node name: pass --node-name (the DaemonSet sets it from spec.nodeName)"))
	}
	klog.SetOutput(secret.Writer(stderr))
	klog.LogToStderr(false)

	metrics := agent.NewMetrics()
	o := agent.Options{
		KubeletConfig: *kubeletConfig, BinDir: *binDir, NodeName: *nodeName, Lead: *lead, CheckInterval: *interval,
		ProbeRegistry: *probeRegistry, ProbeImage: *probeImage, Metrics: metrics,
		Getenv: func(k string) string { v, _ := lookup(k); return v },
	}
	if client, err := kubeClient(*kubeconfig); err != nil {
		klog.InfoS("No Kubernetes API client; the node's health is logged and exported as metrics only", "err", err.Error())
	} else {
		o.Publisher = &agent.NodeStatus{Client: client, NodeName: *nodeName}
	}
	if *metricsAddr != "" {
		srv, err := serveMetrics(*metricsAddr, metrics.Handler())
		if err != nil {
			return fail(stderr, err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	a := agent.New(o)
	klog.InfoS("Starting", "node", *nodeName, "kubeletConfig", *kubeletConfig, "ahead", a.Ahead().Round(time.Second), "provider", installer.DefaultName)
	a.Run(ctx)
	klog.InfoS("Stopping")
	klog.Flush()
	return 0
}

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = name
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

func serveMetrics(addr string, h http.Handler) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", name, secret.Line(err.Error(), 4096))
	return 1
}
