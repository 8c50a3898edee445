// vigil-vcsim: VMware's vSphere API simulator (govmomi's vcsim, from Debian's source package) with
// the faults Vigil's tests need and vcsim cannot make through the vSphere API: an ESX host that
// loses power or stops answering vCenter, a datastore a host can no longer reach, a guest whose
// VMware Tools heartbeat stops. Built by scripts/vcsim.sh; started by packages/testbed/src/vcsim.ts.
//
// It prints its SOAP URL (http://user:pass@127.0.0.1:<port>/sdk) on its first line; Login accepts
// that user and password only. The fault
// endpoints live beside /sdk on the same port, under /vigil/.
//
// Guests here run VMware Tools: a powered-on, connected VM whose guest is not hung reports
// toolsRunningStatus guestToolsRunning and guestHeartbeatStatus green, as a real one does a few
// seconds after boot; a hung guest reports red until its next power-on (a reset boots it afresh).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// extraHandlers are more endpoints on vcsim's port, registered by this package's other files.
var extraHandlers = map[string]http.HandlerFunc{}

var (
	mu sync.Mutex
	// Guests made hung, by VM moref value, with the boot time they were hung in.
	hung = map[string]interface{}{}
	// ESX hosts powered off by a fault (vCenter itself only sees them stop answering).
	poweredOff = map[string]bool{}
)

func main() {
	hosts := flag.Int("hosts", 2, "ESX hosts in the cluster")
	vms := flag.Int("vms", 2, "VMs in the cluster's resource pool")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	useTLS := flag.Bool("tls", false, "serve https with a self-signed certificate")
	user := flag.String("user", "vigil", "the only user name Login accepts")
	password := flag.String("password", "vigil", "its password")
	flag.Parse()

	m := simulator.VPX()
	m.Host = 0
	m.ClusterHost = *hosts
	m.Machine = *vms
	m.Autostart = false
	defer m.Remove()
	if err := m.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	shareDatastores()
	m.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *password)}
	if *useTLS {
		m.Service.TLS = new(tls.Config)
	}
	if m.Service.ServeMux == nil {
		m.Service.ServeMux = http.NewServeMux()
	}
	m.Service.ServeMux.HandleFunc("/vigil/host", hostFault)
	m.Service.ServeMux.HandleFunc("/vigil/vm", vmFault)
	m.Service.ServeMux.HandleFunc("/vigil/datastore", datastoreFault)
	for pattern, handler := range extraHandlers {
		m.Service.ServeMux.HandleFunc(pattern, handler)
	}
	s := m.Service.NewServer()
	fmt.Println(s.URL.String())
	go toolsLoop()
	select {}
}

// shareDatastores mounts every datastore on every host: the shared storage of an HA cluster, where
// any host can run any VM (vcsim mounts each on the first host only).
func shareDatastores() {
	for _, d := range simulator.Map.All("Datastore") {
		ds := d.(*simulator.Datastore)
		for _, h := range simulator.Map.All("HostSystem") {
			host := h.(*simulator.HostSystem)
			mounted := false
			for _, m := range ds.Host {
				mounted = mounted || m.Key == host.Self
			}
			if mounted {
				continue
			}
			yes := true
			info := types.HostMountInfo{AccessMode: "readWrite", Mounted: &yes, Accessible: &yes}
			if len(ds.Host) > 0 {
				info.Path = ds.Host[0].MountInfo.Path
			}
			ds.Host = append(ds.Host, types.DatastoreHostMount{Key: host.Self, MountInfo: info})
			host.Datastore = append(host.Datastore, ds.Self)
		}
	}
}

func find(kind, name string) mo.Entity {
	for _, e := range simulator.Map.All(kind) {
		if e.Entity().Name == name {
			return e
		}
	}
	return nil
}

func fail(w http.ResponseWriter, code int, format string, args ...interface{}) {
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

// /vigil/host?name=H&power=off|on|status, or &connection=notResponding|connected.
// power=off is a host that died: vCenter marks it not responding and its VMs disconnected, their
// power state left as last known (stale), as vCenter does. power=on is the host back from a
// reboot: connected, and the VMs still registered on it powered off (they died with it).
// connection=notResponding is a host cut from vCenter's management network that still runs its VMs.
func hostFault(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e := find("HostSystem", q.Get("name"))
	if e == nil {
		fail(w, 404, "no host %q", q.Get("name"))
		return
	}
	host := e.(*simulator.HostSystem)
	ref := host.Self.Value
	switch power := q.Get("power"); power {
	case "status":
		mu.Lock()
		off := poweredOff[ref]
		mu.Unlock()
		if off {
			fmt.Fprintln(w, "off")
		} else {
			fmt.Fprintln(w, "on")
		}
		return
	case "off", "on":
		mu.Lock()
		wasOff := poweredOff[ref]
		poweredOff[ref] = power == "off"
		mu.Unlock()
		if power == "on" && !wasOff {
			break // already on: nothing died
		}
		conn := types.HostSystemConnectionStateConnected
		state := types.HostSystemPowerStatePoweredOn
		vmConn := types.VirtualMachineConnectionStateConnected
		if power == "off" {
			conn = types.HostSystemConnectionStateNotResponding
			state = types.HostSystemPowerStateUnknown
			vmConn = types.VirtualMachineConnectionStateDisconnected
		}
		setHost(host, conn, state)
		// Every VM whose runtime host it is: vcsim does not update a host's own list of VMs when one
		// is relocated or migrated onto it, so that list misses the VMs that moved there.
		for _, e := range simulator.Map.All("VirtualMachine") {
			vm, ok := e.(*simulator.VirtualMachine)
			if !ok || vm.Runtime.Host == nil || vm.Runtime.Host.Value != ref {
				continue
			}
			changes := []types.PropertyChange{
				{Name: "runtime.connectionState", Val: vmConn},
				{Name: "summary.runtime.connectionState", Val: vmConn},
			}
			if power == "on" {
				changes = append(changes,
					types.PropertyChange{Name: "runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
					types.PropertyChange{Name: "summary.runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff})
			}
			simulator.Map.WithLock(vm, func() { simulator.Map.Update(vm, changes) })
		}
	case "":
		conn := types.HostSystemConnectionState(q.Get("connection"))
		if conn != types.HostSystemConnectionStateConnected && conn != types.HostSystemConnectionStateNotResponding &&
			conn != types.HostSystemConnectionStateDisconnected {
			fail(w, 400, "connection must be connected, notResponding or disconnected")
			return
		}
		setHost(host, conn, host.Runtime.PowerState)
	default:
		fail(w, 400, "power must be on, off or status")
		return
	}
	fmt.Fprintln(w, "ok")
}

func setHost(host *simulator.HostSystem, conn types.HostSystemConnectionState, state types.HostSystemPowerState) {
	simulator.Map.WithLock(host, func() {
		simulator.Map.Update(host, []types.PropertyChange{
			{Name: "runtime.connectionState", Val: conn},
			{Name: "runtime.powerState", Val: state},
			{Name: "summary.runtime.connectionState", Val: conn},
			{Name: "summary.runtime.powerState", Val: state},
		})
	})
}

// /vigil/vm?name=V&guest=hung|ok: a hung guest stops its Tools heartbeat until its next power-on.
func vmFault(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e := find("VirtualMachine", q.Get("name"))
	if e == nil {
		fail(w, 404, "no vm %q", q.Get("name"))
		return
	}
	vm := e.(*simulator.VirtualMachine)
	mu.Lock()
	defer mu.Unlock()
	switch q.Get("guest") {
	case "hung":
		hung[vm.Self.Value] = bootTime(vm)
	case "ok":
		delete(hung, vm.Self.Value)
	default:
		fail(w, 400, "guest must be hung or ok")
		return
	}
	fmt.Fprintln(w, "ok")
}

// bootTime is when the guest last powered on (vcsim updates the summary's copy on power-on).
func bootTime(vm *simulator.VirtualMachine) interface{} {
	if vm.Summary.Runtime.BootTime == nil {
		return nil
	}
	return *vm.Summary.Runtime.BootTime
}

// /vigil/datastore?name=D&accessible=false[&host=H]: the datastore as seen from one host (an APD
// on that host's paths) or, without host, from all of them.
func datastoreFault(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e := find("Datastore", q.Get("name"))
	if e == nil {
		fail(w, 404, "no datastore %q", q.Get("name"))
		return
	}
	ds := e.(*simulator.Datastore)
	accessible := q.Get("accessible") == "true"
	if !accessible && q.Get("accessible") != "false" {
		fail(w, 400, "accessible must be true or false")
		return
	}
	var hostRef string
	if name := q.Get("host"); name != "" {
		h := find("HostSystem", name)
		if h == nil {
			fail(w, 404, "no host %q", name)
			return
		}
		hostRef = h.(*simulator.HostSystem).Self.Value
	}
	simulator.Map.WithLock(ds, func() {
		mounts := make([]types.DatastoreHostMount, len(ds.Host))
		copy(mounts, ds.Host)
		any := false
		for i := range mounts {
			if hostRef == "" || mounts[i].Key.Value == hostRef {
				v := accessible
				mounts[i].MountInfo.Accessible = &v
				if accessible {
					mounts[i].MountInfo.InaccessibleReason = ""
				} else {
					mounts[i].MountInfo.InaccessibleReason = "AllPathsDown_Start"
				}
			}
			if mounts[i].MountInfo.Accessible == nil || *mounts[i].MountInfo.Accessible {
				any = true
			}
		}
		simulator.Map.Update(ds, []types.PropertyChange{
			{Name: "host", Val: mounts},
			{Name: "summary.accessible", Val: any},
		})
	})
	fmt.Fprintln(w, "ok")
}

// adopted reconciles a disconnected VM moved (relocated or registered) onto a host that answers,
// as vCenter does once the new host reports it: connected, and powered off (it died with its old
// host). vcsim itself keeps the stale state it had on the lost host.
func adopted(vm *simulator.VirtualMachine) {
	if vm.Runtime.Host == nil {
		return
	}
	host, ok := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	if !ok || host.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
		return
	}
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "runtime.connectionState", Val: types.VirtualMachineConnectionStateConnected},
		{Name: "summary.runtime.connectionState", Val: types.VirtualMachineConnectionStateConnected},
		{Name: "runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
		{Name: "summary.runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
	})
}

// toolsLoop plays VMware Tools in every guest: running with a green heartbeat while the VM is on,
// connected and not hung; red while hung; not running (gray) while it is off or suspended.
func toolsLoop() {
	for range time.Tick(100 * time.Millisecond) {
		for _, e := range simulator.Map.All("VirtualMachine") {
			vm := e.(*simulator.VirtualMachine)
			simulator.Map.WithLock(vm, func() {
				tools := string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
				beat := types.ManagedEntityStatusGray
				if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn &&
					vm.Runtime.ConnectionState == types.VirtualMachineConnectionStateConnected {
					tools = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
					beat = types.ManagedEntityStatusGreen
					mu.Lock()
					if since, ok := hung[vm.Self.Value]; ok {
						if since == bootTime(vm) {
							beat = types.ManagedEntityStatusRed
						} else {
							delete(hung, vm.Self.Value) // booted afresh since
						}
					}
					mu.Unlock()
				}
				if vm.Runtime.ConnectionState != types.VirtualMachineConnectionStateConnected {
					adopted(vm)
					return // vCenter knows nothing new of a disconnected VM
				}
				if vm.Guest != nil && vm.Guest.ToolsRunningStatus == tools && vm.GuestHeartbeatStatus == beat {
					return
				}
				simulator.Map.Update(vm, []types.PropertyChange{
					{Name: "guest.toolsRunningStatus", Val: tools},
					{Name: "guestHeartbeatStatus", Val: beat},
					{Name: "summary.quickStats.guestHeartbeatStatus", Val: beat},
				})
			})
		}
	}
}
