// Command testkubelet is a stand-in kubelet for the node agent's integration tests.
//
// It speaks the device plugin API through the official Go package
// (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1), so Kantaloupe's own .proto is checked by a
// client it did not write. It serves the Registration service on <dir>/kubelet.sock, connects to
// each plugin that registers, keeps its ListAndWatch stream open and answers a line protocol:
//
//	stdin  (one JSON object per line):
//	  {"cmd":"options"}                                   GetDevicePluginOptions
//	  {"cmd":"preferred","available":[..],"must_include":[..],"size":N}
//	  {"cmd":"allocate","containers":[["id",..],["id",..]]}
//	  {"cmd":"prestart","devices":["id",..]}
//	  {"cmd":"restart"}     kubelet restart: drop the plugin, remove every socket, recreate ours
//	  {"cmd":"quit"}
//	stdout (one JSON object per line):
//	  {"event":"ready","socket":PATH}                     serving the Registration socket
//	  {"event":"registered","request":{...}}              a plugin called Register
//	  {"event":"devices","devices":[{"id":..,"health":..,"numa":[..]}]}   a ListAndWatch update
//	  {"event":"stream_closed","error":".."}              the ListAndWatch stream ended
//	  {"reply":CMD,"ok":true,...} / {"reply":CMD,"ok":false,"code":"InvalidArgument","message":".."}
//
// Replies come in command order; events may come in between.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) send(v map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(v)
}

type plugin struct {
	request *pluginapi.RegisterRequest
	conn    *grpc.ClientConn
	client  pluginapi.DevicePluginClient
	cancel  context.CancelFunc
}

type kubelet struct {
	pluginapi.UnimplementedRegistrationServer
	dir    string
	out    *output
	mu     sync.Mutex
	server *grpc.Server
	plugin *plugin
}

func (k *kubelet) socket() string { return filepath.Join(k.dir, "kubelet.sock") }

func (k *kubelet) Register(ctx context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	if r.Version != pluginapi.Version {
		return nil, fmt.Errorf("unsupported device plugin API version %q", r.Version)
	}
	if strings.Contains(r.Endpoint, "/") {
		return nil, fmt.Errorf("endpoint %q must be a file name in %s", r.Endpoint, k.dir)
	}
	k.out.send(map[string]any{"event": "registered", "request": map[string]any{
		"version":       r.Version,
		"endpoint":      r.Endpoint,
		"resource_name": r.ResourceName,
		"options": map[string]any{
			"pre_start_required":                 r.GetOptions().GetPreStartRequired(),
			"get_preferred_allocation_available": r.GetOptions().GetGetPreferredAllocationAvailable(),
		},
	}})
	// Like kubelet, connect to the plugin after answering Register.
	go k.connect(r)
	return &pluginapi.Empty{}, nil
}

func (k *kubelet) connect(r *pluginapi.RegisterRequest) {
	target := "unix://" + filepath.Join(k.dir, r.Endpoint)
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		k.out.send(map[string]any{"event": "stream_closed", "error": err.Error()})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &plugin{request: r, conn: conn, client: pluginapi.NewDevicePluginClient(conn), cancel: cancel}
	k.mu.Lock()
	if old := k.plugin; old != nil {
		old.cancel()
		_ = old.conn.Close()
	}
	k.plugin = p
	k.mu.Unlock()
	stream, err := p.client.ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		k.out.send(map[string]any{"event": "stream_closed", "error": err.Error()})
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			k.out.send(map[string]any{"event": "stream_closed", "error": err.Error()})
			return
		}
		devices := make([]map[string]any, 0, len(resp.Devices))
		for _, d := range resp.Devices {
			numa := []int64{}
			if d.Topology != nil {
				for _, n := range d.Topology.Nodes {
					numa = append(numa, n.ID)
				}
			}
			devices = append(devices, map[string]any{"id": d.ID, "health": d.Health, "numa": numa})
		}
		k.out.send(map[string]any{"event": "devices", "devices": devices})
	}
}

func (k *kubelet) serve() error {
	_ = os.Remove(k.socket())
	lis, err := net.Listen("unix", k.socket())
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(server, k)
	k.mu.Lock()
	k.server = server
	k.mu.Unlock()
	go func() { _ = server.Serve(lis) }()
	k.out.send(map[string]any{"event": "ready", "socket": k.socket()})
	return nil
}

// restart does what a kubelet restart does to plugins: the registration server goes away, every
// socket in the directory is removed (kubelet's device manager empties it on start), and a new
// kubelet.sock appears; plugins must notice and register again.
func (k *kubelet) restart() error {
	k.mu.Lock()
	server, p := k.server, k.plugin
	k.server, k.plugin = nil, nil
	k.mu.Unlock()
	if p != nil {
		p.cancel()
		_ = p.conn.Close()
	}
	if server != nil {
		server.Stop()
	}
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sock") {
			_ = os.Remove(filepath.Join(k.dir, e.Name()))
		}
	}
	time.Sleep(100 * time.Millisecond)
	return k.serve()
}

func (k *kubelet) client() (pluginapi.DevicePluginClient, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.plugin == nil {
		return nil, errors.New("no plugin registered")
	}
	return k.plugin.client, nil
}

type command struct {
	Cmd         string     `json:"cmd"`
	Available   []string   `json:"available"`
	MustInclude []string   `json:"must_include"`
	Size        int32      `json:"size"`
	Containers  [][]string `json:"containers"`
	Devices     []string   `json:"devices"`
}

func failure(cmd string, err error) map[string]any {
	st, _ := status.FromError(err)
	return map[string]any{"reply": cmd, "ok": false, "code": st.Code().String(), "message": st.Message()}
}

func (k *kubelet) handle(c command) map[string]any {
	if c.Cmd == "restart" {
		if err := k.restart(); err != nil {
			return failure(c.Cmd, err)
		}
		return map[string]any{"reply": c.Cmd, "ok": true}
	}
	client, err := k.client()
	if err != nil {
		return failure(c.Cmd, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch c.Cmd {
	case "options":
		o, err := client.GetDevicePluginOptions(ctx, &pluginapi.Empty{})
		if err != nil {
			return failure(c.Cmd, err)
		}
		return map[string]any{"reply": c.Cmd, "ok": true, "options": map[string]any{
			"pre_start_required":                 o.PreStartRequired,
			"get_preferred_allocation_available": o.GetPreferredAllocationAvailable,
		}}
	case "preferred":
		req := &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{
			AvailableDeviceIDs: c.Available, MustIncludeDeviceIDs: c.MustInclude, AllocationSize: c.Size,
		}}}
		resp, err := client.GetPreferredAllocation(ctx, req)
		if err != nil {
			return failure(c.Cmd, err)
		}
		ids := []string{}
		for _, r := range resp.ContainerResponses {
			ids = append(ids, r.DeviceIDs...)
		}
		return map[string]any{"reply": c.Cmd, "ok": true, "devices": ids}
	case "allocate":
		req := &pluginapi.AllocateRequest{}
		for _, ids := range c.Containers {
			req.ContainerRequests = append(req.ContainerRequests, &pluginapi.ContainerAllocateRequest{DevicesIds: ids})
		}
		resp, err := client.Allocate(ctx, req)
		if err != nil {
			return failure(c.Cmd, err)
		}
		containers := []map[string]any{}
		for _, r := range resp.ContainerResponses {
			mounts := []map[string]any{}
			for _, m := range r.Mounts {
				mounts = append(mounts, map[string]any{"container_path": m.ContainerPath, "host_path": m.HostPath, "read_only": m.ReadOnly})
			}
			devices := []map[string]any{}
			for _, d := range r.Devices {
				devices = append(devices, map[string]any{"container_path": d.ContainerPath, "host_path": d.HostPath, "permissions": d.Permissions})
			}
			cdi := []string{}
			for _, d := range r.CdiDevices {
				cdi = append(cdi, d.Name)
			}
			envs, annotations := r.Envs, r.Annotations
			if envs == nil {
				envs = map[string]string{}
			}
			if annotations == nil {
				annotations = map[string]string{}
			}
			containers = append(containers, map[string]any{
				"envs": envs, "mounts": mounts, "devices": devices, "annotations": annotations, "cdi_devices": cdi,
			})
		}
		return map[string]any{"reply": c.Cmd, "ok": true, "containers": containers}
	case "prestart":
		if _, err := client.PreStartContainer(ctx, &pluginapi.PreStartContainerRequest{DevicesIds: c.Devices}); err != nil {
			return failure(c.Cmd, err)
		}
		return map[string]any{"reply": c.Cmd, "ok": true}
	}
	return map[string]any{"reply": c.Cmd, "ok": false, "code": "Unknown", "message": "unknown command " + c.Cmd}
}

func main() {
	dir := flag.String("dir", "", "device plugin directory (kubelet.sock is served there)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "testkubelet: --dir is required")
		os.Exit(2)
	}
	k := &kubelet{dir: *dir, out: &output{enc: json.NewEncoder(os.Stdout)}}
	if err := k.serve(); err != nil {
		fmt.Fprintln(os.Stderr, "testkubelet:", err)
		os.Exit(1)
	}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" {
			continue
		}
		var c command
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			k.out.send(map[string]any{"reply": "", "ok": false, "code": "InvalidArgument", "message": err.Error()})
			continue
		}
		if c.Cmd == "quit" {
			break
		}
		k.out.send(k.handle(c))
	}
	k.mu.Lock()
	if k.server != nil {
		k.server.Stop()
	}
	k.mu.Unlock()
	_ = os.Remove(k.socket())
}
