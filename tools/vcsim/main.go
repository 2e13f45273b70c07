// Command vcsimdr is a small launcher for the vCenter simulator (vcsim) that
// ships inside Debian's golang-github-vmware-govmomi-dev package (govmomi
// 0.24.2). The Debian package contains only the Go library
// (github.com/vmware/govmomi/simulator) and no vcsim command, so the vmdr
// tests and lab use this main instead. It builds in GOPATH mode from
// /usr/share/gocode with nothing downloaded (see tools/vcsim/README.md).
//
// Compared to a stock vcsim it builds the inventory the vmdr lab needs:
//
//   - one datacenter "DC0" with one cluster "cluster-01" of -cluster-hosts ESX
//     hosts, plus -standalone-hosts standalone ESX hosts;
//   - no virtual machines and no LocalDS_N datastores;
//   - the datastores from -datastores, each backed by a real, persistent
//     directory -ds-root/<name> (never removed on exit), typed VMFS, vsan or
//     NFS the way pyVmomi reads them (summary.type and the info subtype);
//   - Datastore.host and HostSystem.datastore set to exactly the mounts given,
//     working around vcsim listing only the last host in Datastore.host.
//
// Once listening it prints one JSON line describing the inventory to stdout,
// then serves until SIGTERM or SIGINT and exits 0.
package main

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	datacenterName = "DC0" // the name simulator.Model gives its first datacenter
	clusterName    = "cluster-01"

	defaultDatastores = "vmfs-01:VMFS:all,vsan-01:vsan:cluster,nfs-01:NFS:standalone"
)

// Canonical datastore types, spelled as vSphere reports them in summary.type.
var datastoreTypes = map[string]string{
	"vmfs": "VMFS",
	"vsan": "vsan",
	"nfs":  "NFS",
}

type datastoreSpec struct {
	Name   string
	Type   string // VMFS, vsan or NFS
	Mounts string // all, cluster or standalone
}

// Output is the JSON line printed once the server listens.
type Output struct {
	URL        string            `json:"url"`
	PID        int               `json:"pid"`
	Datacenter string            `json:"datacenter"`
	Cluster    string            `json:"cluster"`
	Hosts      []HostOutput      `json:"hosts"`
	Datastores []DatastoreOutput `json:"datastores"`
}

type HostOutput struct {
	Name       string `json:"name"`
	Cluster    string `json:"cluster"`
	Standalone bool   `json:"standalone"`
}

type DatastoreOutput struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Path  string   `json:"path"`
	Hosts []string `json:"hosts"`
}

type host struct {
	obj        *simulator.HostSystem
	standalone bool
}

func main() {
	listen := flag.String("l", "127.0.0.1:0", "listen address host:port (port 0 picks a free port)")
	useTLS := flag.Bool("tls", true, "serve https (with -cert/-key, or vcsim's built-in 127.0.0.1 test certificate)")
	certFile := flag.String("cert", "", "TLS certificate PEM file (needs -key)")
	keyFile := flag.String("key", "", "TLS private key PEM file (needs -cert)")
	user := flag.String("user", "", "only this user may log in (needs -pass); default: any non-empty user and password")
	pass := flag.String("pass", "", "password for -user")
	clusterHosts := flag.Int("cluster-hosts", 2, "number of ESX hosts in cluster "+clusterName)
	standaloneHosts := flag.Int("standalone-hosts", 1, "number of standalone ESX hosts in "+datacenterName)
	esx := flag.String("esx", "", "serve a standalone ESX host of this name (HostAgent API, datacenter ha-datacenter) instead of a vCenter")
	dsRoot := flag.String("ds-root", "", "directory holding one subdirectory per datastore (required; kept on exit)")
	dsList := flag.String("datastores", defaultDatastores,
		"comma-separated name:type:mounts; type VMFS|vsan|NFS, mounts all|cluster|standalone")
	byIDRoot := flag.String("byid-root", "", "keep a /dev/disk/by-id folder per VM here, as its Linux guest would see its disks (see byid.go)")
	flag.Parse()

	cfg := config{
		listen:          *listen,
		tls:             *useTLS,
		certFile:        *certFile,
		keyFile:         *keyFile,
		user:            *user,
		pass:            *pass,
		clusterHosts:    *clusterHosts,
		standaloneHosts: *standaloneHosts,
		esx:             *esx,
		dsRoot:          *dsRoot,
		dsList:          *dsList,
		byIDRoot:        *byIDRoot,
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "vcsimdr:", err)
		os.Exit(1)
	}
}

type config struct {
	listen, certFile, keyFile, user, pass, dsRoot, dsList, byIDRoot string
	tls                                                             bool
	clusterHosts, standaloneHosts                                   int
	esx                                                             string
}

func run(cfg config) error {
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	if cfg.dsRoot == "" {
		return errors.New("-ds-root is required")
	}
	if cfg.clusterHosts < 0 || cfg.standaloneHosts < 0 {
		return errors.New("-cluster-hosts and -standalone-hosts must be >= 0")
	}
	if (cfg.user == "") != (cfg.pass == "") {
		return errors.New("-user and -pass must be given together")
	}
	if (cfg.certFile == "") != (cfg.keyFile == "") {
		return errors.New("-cert and -key must be given together")
	}
	if cfg.certFile != "" && !cfg.tls {
		return errors.New("-cert/-key need -tls=true")
	}
	specs, err := parseDatastores(cfg.dsList)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(cfg.dsRoot)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if cfg.tls {
		tlsConfig = new(tls.Config)
		if cfg.certFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.certFile, cfg.keyFile)
			if err != nil {
				return fmt.Errorf("loading -cert/-key: %w", err)
			}
			tlsConfig.Certificates = []tls.Certificate{cert}
		}
	}

	m, hosts, datacenter, cluster, err := buildModel(cfg)
	if err != nil {
		return err
	}
	dsOut, err := addDatastores(root, specs, hosts)
	if err != nil {
		return err
	}
	var cbt *cbtEmulator
	if cfg.byIDRoot != "" {
		byIDRoot, err := filepath.Abs(cfg.byIDRoot)
		if err != nil {
			return err
		}
		emulator, err := newByIDEmulator(byIDRoot, dsOut)
		if err != nil {
			return fmt.Errorf("-byid-root: %w", err)
		}
		simulator.Map.AddHandler(emulator)
		go emulator.watch()
		cbt = &cbtEmulator{disks: emulator}
		simulator.Map.AddHandler(cbt)
	}

	m.Service.Listen = &url.URL{Host: cfg.listen}
	if cfg.user != "" {
		// SessionManager.validLogin compares against Service.Listen.User;
		// anything else gets vim.fault.InvalidLogin.
		m.Service.Listen.User = url.UserPassword(cfg.user, cfg.pass)
	}
	m.Service.TLS = tlsConfig

	server, err := startServer(m.Service)
	if err != nil {
		return err
	}
	if cbt != nil {
		// In front of the simulator, which does not implement
		// QueryChangedDiskAreas. Set before the URL is printed: no client
		// knows the address yet.
		cbt.inner = server.Server.Config.Handler
		server.Server.Config.Handler = cbt
	}

	u := *server.URL
	u.User = nil // Server.URL carries the login credentials
	out := Output{
		URL:        u.String(),
		PID:        os.Getpid(),
		Datacenter: datacenter,
		Cluster:    cluster,
		Hosts:      []HostOutput{},
		Datastores: dsOut,
	}
	for _, h := range hosts {
		ho := HostOutput{Name: h.obj.Name, Standalone: h.standalone}
		if !h.standalone {
			ho.Cluster = cluster
		}
		out.Hosts = append(out.Hosts, ho)
	}
	line, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
		return err
	}
	_ = os.Stdout.Sync() // os.Stdout is unbuffered; Sync fails harmlessly on pipes

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig

	// Close waits for requests in flight (e.g. a long WaitForUpdatesEx);
	// do not let that hold up the exit. Datastore directories are kept.
	done := make(chan struct{})
	go func() {
		server.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	return nil
}

// buildModel creates the inventory: a vCenter with DC0, cluster-01 and its
// hosts, or (-esx NAME) a standalone ESX host answering the HostAgent API the
// way a host not managed by any vCenter does (datacenter "ha-datacenter").
func buildModel(cfg config) (*simulator.Model, []host, string, string, error) {
	if cfg.esx != "" {
		m := simulator.ESX()
		m.Datastore = 0
		m.Machine = 0
		m.Autostart = false
		if err := m.Create(); err != nil {
			return nil, nil, "", "", fmt.Errorf("creating model: %w", err)
		}
		obj := simulator.Map.Any("HostSystem").(*simulator.HostSystem)
		obj.Name = cfg.esx
		obj.Summary.Config.Name = cfg.esx
		return m, []host{{obj: obj, standalone: true}}, "ha-datacenter", "", nil
	}
	// A bare vCenter model: one datacenter, nothing else. Hosts and
	// datastores are added below with our own names.
	m := simulator.VPX()
	m.Datacenter = 1
	m.Portgroup = 0
	m.Host = 0
	m.Cluster = 0
	m.ClusterHost = 0
	m.Datastore = 0
	m.Machine = 0
	m.Autostart = false
	if err := m.Create(); err != nil {
		return nil, nil, "", "", fmt.Errorf("creating model: %w", err)
	}
	hosts, err := addHosts(m.Service, cfg.clusterHosts, cfg.standaloneHosts)
	if err != nil {
		return nil, nil, "", "", err
	}
	return m, hosts, datacenterName, clusterName, nil
}

// startServer starts the simulator's HTTP(S) server. The simulator panics
// when it cannot listen; turn that into an error.
func startServer(s *simulator.Service) (server *simulator.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("starting server: %v", r)
		}
	}()
	return s.NewServer(), nil
}

func parseDatastores(list string) ([]datastoreSpec, error) {
	var specs []datastoreSpec
	seen := map[string]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("-datastores: %q is not name:type:mounts", item)
		}
		name := strings.TrimSpace(parts[0])
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\[]") {
			return nil, fmt.Errorf("-datastores: bad datastore name %q", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("-datastores: duplicate datastore name %q", name)
		}
		seen[name] = true
		typ, ok := datastoreTypes[strings.ToLower(strings.TrimSpace(parts[1]))]
		if !ok {
			return nil, fmt.Errorf("-datastores: %q: type must be VMFS, vsan or NFS", item)
		}
		mounts := strings.ToLower(strings.TrimSpace(parts[2]))
		switch mounts {
		case "all", "cluster", "standalone":
		default:
			return nil, fmt.Errorf("-datastores: %q: mounts must be all, cluster or standalone", item)
		}
		specs = append(specs, datastoreSpec{Name: name, Type: typ, Mounts: mounts})
	}
	return specs, nil
}

// addHosts creates cluster-01 with nCluster hosts and nStandalone standalone
// hosts in DC0, through the simulator's own API (as simulator.Model does).
func addHosts(svc *simulator.Service, nCluster, nStandalone int) ([]host, error) {
	ctx := context.Background()
	c, err := vim25.NewClient(ctx, svc)
	if err != nil {
		return nil, err
	}
	dc, err := find.NewFinder(c).Datacenter(ctx, datacenterName)
	if err != nil {
		return nil, err
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, err
	}
	cluster, err := folders.HostFolder.CreateCluster(ctx, clusterName, types.ClusterConfigSpecEx{})
	if err != nil {
		return nil, fmt.Errorf("creating cluster: %w", err)
	}

	var hosts []host
	add := func(name string, standalone bool, f func(types.HostConnectSpec) (*object.Task, error)) error {
		task, err := f(types.HostConnectSpec{HostName: name})
		if err != nil {
			return err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return fmt.Errorf("adding host %s: %w", name, err)
		}
		obj := simulator.Map.Get(info.Result.(types.ManagedObjectReference)).(*simulator.HostSystem)
		hosts = append(hosts, host{obj: obj, standalone: standalone})
		return nil
	}
	for i := 1; i <= nCluster; i++ {
		err := add(fmt.Sprintf("esx-%02d", i), false, func(spec types.HostConnectSpec) (*object.Task, error) {
			return cluster.AddHost(ctx, spec, true, nil, nil)
		})
		if err != nil {
			return nil, err
		}
	}
	for i := 1; i <= nStandalone; i++ {
		err := add(fmt.Sprintf("esx-sa-%02d", i), true, func(spec types.HostConnectSpec) (*object.Task, error) {
			return folders.HostFolder.AddStandaloneHost(ctx, spec, true, nil, nil)
		})
		if err != nil {
			return nil, err
		}
	}
	return hosts, nil
}

// addDatastores creates one Datastore object per spec, backed by the
// directory root/<name>, directly in the simulator's registry. This does what
// HostDatastoreSystem.CreateLocalDatastore does, but once per datastore
// (calling it per host replaces the object each time, which is why stock
// vcsim lists only the last host in Datastore.host).
func addDatastores(root string, specs []datastoreSpec, hosts []host) ([]DatastoreOutput, error) {
	dc := simulator.Map.Any("Datacenter").(*simulator.Datacenter)
	folder := simulator.Map.Get(dc.DatastoreFolder).(*simulator.Folder)

	mounted := map[*simulator.HostSystem][]types.ManagedObjectReference{}
	fsMounts := map[*simulator.HostSystem][]types.HostFileSystemMountInfo{}
	out := []DatastoreOutput{}

	for _, spec := range specs {
		dir := filepath.Join(root, spec.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}

		ds := &simulator.Datastore{}
		ds.Name = spec.Name
		ds.Self.Type = "Datastore"
		simulator.Map.NewEntity(ds) // datastore-N
		ds.Info = &types.DatastoreInfo{Name: spec.Name, Url: dir}
		ds.Summary = types.DatastoreSummary{
			Datastore:       &ds.Self,
			Name:            spec.Name,
			Url:             dir,
			Accessible:      true,
			Type:            spec.Type,
			MaintenanceMode: string(types.DatastoreSummaryMaintenanceModeStateNormal),
		}
		ds.Capability = types.DatastoreCapability{
			DirectoryHierarchySupported:      true,
			RawDiskMappingsSupported:         spec.Type == "VMFS",
			PerFileThinProvisioningSupported: true,
			StorageIORMSupported:             types.NewBool(true),
			NativeSnapshotSupported:          types.NewBool(false),
			TopLevelDirectoryCreateSupported: types.NewBool(true),
			SeSparseSupported:                types.NewBool(spec.Type != "NFS"),
		}
		// Sets FreeSpace and Capacity from the real filesystem.
		if fault := ds.RefreshDatastore(&types.RefreshDatastore{This: ds.Self}).Fault(); fault != nil {
			return nil, fmt.Errorf("datastore %s: %s", spec.Name, fault.String)
		}
		base := *ds.Info.GetDatastoreInfo()

		volume := types.HostFileSystemVolume{Type: spec.Type, Name: spec.Name, Capacity: ds.Summary.Capacity}
		var vol types.BaseHostFileSystemVolume
		switch spec.Type {
		case "VMFS":
			vmfs := &types.HostVmfsVolume{
				HostFileSystemVolume: volume,
				BlockSizeMb:          1,
				MaxBlocks:            63963136,
				MajorVersion:         6,
				Version:              "6.82",
				Uuid:                 vmfsUUID(spec.Name),
				Extent:               []types.HostScsiDiskPartition{{DiskName: "mpx.vmhba0:C0:T0:L0", Partition: 1}},
				Ssd:                  types.NewBool(true),
				Local:                types.NewBool(false),
			}
			ds.Info = &types.VmfsDatastoreInfo{
				DatastoreInfo:          base,
				MaxPhysicalRDMFileSize: 64 << 40,
				MaxVirtualRDMFileSize:  62 << 40,
				Vmfs:                   vmfs,
			}
			vol = vmfs
		case "NFS":
			nas := &types.HostNasVolume{
				HostFileSystemVolume: volume,
				RemoteHost:           "127.0.0.1",
				RemotePath:           dir,
			}
			ds.Info = &types.NasDatastoreInfo{DatastoreInfo: base, Nas: nas}
			vol = nas
		default: // vsan: base DatastoreInfo (no MembershipUuid, see emulators.md)
			ds.Info = &base
			vol = &volume
		}

		// Mounts.
		names := []string{}
		for _, h := range hosts {
			switch {
			case spec.Mounts == "cluster" && h.standalone, spec.Mounts == "standalone" && !h.standalone:
				continue
			}
			mount := types.HostMountInfo{
				Path:       dir,
				AccessMode: string(types.HostMountModeReadWrite),
				Mounted:    types.NewBool(true),
				Accessible: types.NewBool(true),
			}
			ds.Host = append(ds.Host, types.DatastoreHostMount{Key: h.obj.Self, MountInfo: mount})
			mounted[h.obj] = append(mounted[h.obj], ds.Self)
			fsMounts[h.obj] = append(fsMounts[h.obj], types.HostFileSystemMountInfo{MountInfo: mount, Volume: vol})
			names = append(names, h.obj.Name)
		}
		ds.Summary.MultipleHostAccess = types.NewBool(len(ds.Host) > 1)

		browser := &simulator.HostDatastoreBrowser{}
		browser.Datastore = []types.ManagedObjectReference{ds.Self}
		ds.Browser = simulator.Map.Put(browser).Reference()

		// Register under DC0's datastore folder (what folderPutChild does).
		folder.ChildEntity = append(folder.ChildEntity, ds.Self)
		simulator.Map.PutEntity(folder, ds)
		simulator.Map.AddReference(dc, &dc.Datastore, ds.Self)

		out = append(out, DatastoreOutput{Name: spec.Name, Type: spec.Type, Path: dir, Hosts: names})
	}

	// HostSystem.datastore (shared with its HostDatastoreSystem, as in vcsim),
	// the parent compute resource's datastore list, and config.fileSystemVolume.
	for _, h := range hosts {
		refs := mounted[h.obj]
		dss := simulator.Map.Get(*h.obj.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
		dss.Datastore = refs
		h.obj.Datastore = dss.Datastore

		var cr *mo.ComputeResource
		switch p := simulator.Map.Get(*h.obj.Parent).(type) {
		case *mo.ComputeResource:
			cr = p
		case *simulator.ClusterComputeResource:
			cr = &p.ComputeResource
		}
		if cr != nil {
			for _, ref := range refs {
				simulator.Map.AddReference(cr, &cr.Datastore, ref)
			}
		}

		if h.obj.Config != nil {
			h.obj.Config.FileSystemVolume = &types.HostFileSystemVolumeInfo{
				VolumeTypeList: []string{"VMFS", "NFS", "NFS41", "vsan", "VFFS", "VVOL"},
				MountInfo:      fsMounts[h.obj],
			}
		}
	}
	return out, nil
}

// vmfsUUID returns a stable VMFS-style volume UUID (xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx).
func vmfsUUID(name string) string {
	s := sha1.Sum([]byte("vcsimdr/" + name))
	return fmt.Sprintf("%x-%x-%x-%x", s[0:4], s[4:8], s[8:10], s[10:16])
}
