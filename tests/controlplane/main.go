// Command controlplane is a single binary holding the pieces of a real Kubernetes
// cluster that the tests and the dev playground need: an embedded etcd,
// kube-apiserver, kube-controller-manager and, for the opt-in node that runs real Pods,
// kube-scheduler and kubelet. The first argument picks the piece; the rest are that
// piece's own flags. It exists because these machines have no container engine, so
// kind cannot run here; one binary shares the packages the pieces have in common, which
// makes the cold build much shorter than separate binaries.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet [flags]")
		os.Exit(2)
	}
	piece, rest := os.Args[1], os.Args[2:]
	// Each upstream command parses os.Args itself, so drop the piece name first.
	os.Args = append([]string{os.Args[0] + " " + piece}, rest...)
	switch piece {
	case "etcd":
		os.Exit(runEtcd(rest))
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubelet":
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "version":
		fmt.Println("controlplane k8s.io/kubernetes v1.37.2")
	default:
		fmt.Fprintf(os.Stderr, "unknown piece %q\n", piece)
		os.Exit(2)
	}
}

// runEtcd starts a single-member etcd on loopback and serves until SIGINT/SIGTERM.
func runEtcd(args []string) int {
	// Flag names follow the etcd binary's, so one launcher drives either.
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "directory for etcd's data")
	clientURL := fs.String("listen-client-urls", "http://127.0.0.1:2379", "client URL")
	_ = fs.String("advertise-client-urls", "", "ignored: the client URL is advertised")
	peerURL := fs.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL")
	noFsync := fs.Bool("unsafe-no-fsync", false, "skip fsync: fast, for throwaway test clusters")
	_ = fs.Parse(args)
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "--data-dir is required")
		return 2
	}
	cu, err := url.Parse(*clientURL)
	if err != nil {
		log.Printf("bad client url: %v", err)
		return 2
	}
	pu, err := url.Parse(*peerURL)
	if err != nil {
		log.Printf("bad peer url: %v", err)
		return 2
	}
	cfg := embed.NewConfig()
	cfg.Dir = *dataDir
	cfg.Name = "controlplane"
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = *noFsync
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Printf("etcd start: %v", err)
		return 1
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("etcd ready")
	case <-time.After(60 * time.Second):
		log.Printf("etcd did not become ready within 60s")
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		return 0
	case err := <-e.Err():
		log.Printf("etcd: %v", err)
		return 1
	}
}
