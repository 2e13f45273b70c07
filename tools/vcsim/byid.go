package main

// What ESX and a Linux guest do with a VM's virtual disks, which the
// simulator leaves out (flag -byid-root):
//
//   - a disk created with the VM (fileOperation "create") becomes a real
//     VMDK: a descriptor carrying its UUID (ddb.uuid, from backing.uuid or a
//     new 6000C29… one) and a sparse -flat.vmdk extent of its capacity. The
//     simulator leaves two empty files;
//   - an existing VMDK attached to a VM (ReconfigVM, fileOperation "") gets
//     backing.uuid from its descriptor's ddb.uuid, as ESX reads it. The
//     simulator leaves it empty;
//   - a powered-on VM with disk.enableUUID=TRUE sees each disk on a SCSI
//     controller under /dev/disk/by-id as udev names it (wwn-0x<uuid>,
//     scsi-3<uuid>; see vmdr's roles/byid.py). The emulator keeps that folder
//     per VM as <byid-root>/<vm name>, the links pointing at the -flat.vmdk
//     extents. Hot-adding or removing a disk or powering the VM on or off
//     updates it before the task ends; a change of disk.enableUUID (which
//     the simulator applies without a property update) within half a
//     second; destroying the VM removes it.
//
// vmdr's appliances (master target, process server) run with --by-id
// pointing at their VM's folder; production uses /dev/disk/by-id with the
// same resolver.

import (
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var ddbUUID = regexp.MustCompile(`(?m)^ddb\.uuid\s*=\s*"([0-9A-Fa-f ]+)"`)

type byIDEmulator struct {
	root       string            // -byid-root: one folder per VM
	datastores map[string]string // datastore name -> directory
	mu         sync.Mutex
	folders    map[types.ManagedObjectReference]string // VM -> its folder
}

// watch syncs every VM twice a second: what no property update announces
// (extraConfig) is seen too.
func (e *byIDEmulator) watch() {
	for range time.Tick(500 * time.Millisecond) {
		for _, entity := range simulator.Map.All("VirtualMachine") {
			simulator.Map.WithLock(entity, func() {
				if vm := asVM(entity); vm != nil {
					e.sync(vm)
				}
			})
		}
	}
}

func newByIDEmulator(root string, datastores []DatastoreOutput) (*byIDEmulator, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	e := &byIDEmulator{root: root, datastores: map[string]string{},
		folders: map[types.ManagedObjectReference]string{}}
	for _, ds := range datastores {
		e.datastores[ds.Name] = ds.Path
	}
	return e, nil
}

func (e *byIDEmulator) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VmdrByIdEmulator", Value: "byid"}
}

func (e *byIDEmulator) PutObject(obj mo.Reference) {
	if vm := asVM(obj); vm != nil {
		e.sync(vm)
	}
}

func (e *byIDEmulator) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	vm := asVM(obj)
	if vm == nil {
		return
	}
	for _, c := range changes {
		switch c.Name {
		case "config.hardware.device", "config.extraConfig", "runtime.powerState", "name":
			e.sync(vm)
			return
		}
	}
}

func (e *byIDEmulator) RemoveObject(ref types.ManagedObjectReference) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if folder, ok := e.folders[ref]; ok {
		_ = os.RemoveAll(folder)
		delete(e.folders, ref)
	}
}

func asVM(obj mo.Reference) *mo.VirtualMachine {
	switch v := obj.(type) {
	case *mo.VirtualMachine:
		return v
	case *simulator.VirtualMachine:
		return &v.VirtualMachine
	}
	return nil
}

// sync makes the VM's disks real and its by-id folder match its devices.
// One at a time: two VMs may hold the same disk.
func (e *byIDEmulator) sync(vm *mo.VirtualMachine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if vm.Config == nil || vm.Name == "" || strings.ContainsAny(vm.Name, "/\x00") || vm.Name[0] == '.' {
		return
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	links := map[string]string{}
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		descriptor, flat, ok := e.files(backing.FileName)
		if !ok {
			continue
		}
		e.realise(disk, backing, descriptor, flat)
		if _, scsi := devices.FindByKey(disk.ControllerKey).(types.BaseVirtualSCSIController); !scsi {
			continue // SATA and NVMe disks get other names
		}
		hex := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(backing.Uuid))
		if len(hex) != 32 {
			continue
		}
		links["wwn-0x"+hex] = flat
		links["scsi-3"+hex] = flat
	}
	if !enableUUID(vm) || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		links = map[string]string{} // the guest sees no UUID, or is not running
	}
	folder := filepath.Join(e.root, vm.Name)
	if old, ok := e.folders[vm.Self]; ok && old != folder {
		_ = os.RemoveAll(old) // renamed
	}
	e.folders[vm.Self] = folder
	if err := syncLinks(folder, links); err != nil {
		log.Printf("by-id folder of %s: %v", vm.Name, err)
	}
}

// files resolves "[ds] dir/disk.vmdk" to its descriptor and extent.
func (e *byIDEmulator) files(name string) (string, string, bool) {
	var path object.DatastorePath
	if !path.FromString(name) || path.Path == "" {
		return "", "", false
	}
	dir, ok := e.datastores[path.Datastore]
	if !ok || strings.Contains(path.Path, "..") {
		return "", "", false
	}
	descriptor := filepath.Join(dir, filepath.FromSlash(path.Path))
	flat := strings.TrimSuffix(descriptor, ".vmdk") + "-flat.vmdk"
	return descriptor, flat, true
}

// realise gives a just-created disk its descriptor and extent, and an
// attached one the UUID its descriptor holds.
func (e *byIDEmulator) realise(disk *types.VirtualDisk, backing *types.VirtualDiskFlatVer2BackingInfo, descriptor, flat string) {
	info, err := os.Stat(descriptor)
	if err != nil {
		return
	}
	if info.Size() == 0 { // the simulator's empty placeholder: a new disk
		if backing.Uuid == "" {
			backing.Uuid = newDiskUUID()
		}
		text := descriptorText(filepath.Base(flat), disk.CapacityInKB*1024, backing.Uuid)
		if err := writeAtomically(descriptor, []byte(text)); err != nil {
			log.Printf("writing %s: %v", descriptor, err)
			return
		}
		if st, err := os.Stat(flat); err == nil && st.Size() < disk.CapacityInKB*1024 {
			_ = os.Truncate(flat, disk.CapacityInKB*1024)
		}
		return
	}
	if backing.Uuid == "" {
		data, err := os.ReadFile(descriptor)
		if err != nil || len(data) > 64<<10 {
			return
		}
		if m := ddbUUID.FindSubmatch(data); m != nil {
			backing.Uuid = vmwareUUID(strings.ReplaceAll(string(m[1]), " ", ""))
		}
	}
}

// enableUUID reads the VM's last disk.enableUUID: the simulator appends a
// key set again rather than replacing it, and ESX (and vmdr's discovery)
// take the last.
func enableUUID(vm *mo.VirtualMachine) bool {
	on := false
	for _, o := range vm.Config.ExtraConfig {
		opt := o.GetOptionValue()
		if strings.EqualFold(opt.Key, "disk.enableUUID") {
			value, _ := opt.Value.(string)
			on = strings.EqualFold(value, "TRUE")
		}
	}
	return on
}

func writeAtomically(path string, data []byte) error {
	tmp := path + ".vcsimdr-new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// syncLinks makes folder hold exactly the links given (name -> target).
func syncLinks(folder string, links map[string]string) error {
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(folder)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		name := entry.Name()
		if target, err := os.Readlink(filepath.Join(folder, name)); err != nil || links[name] != target {
			_ = os.Remove(filepath.Join(folder, name))
		}
	}
	for name, target := range links {
		link := filepath.Join(folder, name)
		if current, err := os.Readlink(link); err == nil && current == target {
			continue
		}
		tmp := link + ".new"
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, link); err != nil {
			return err
		}
	}
	return nil
}

func descriptorText(flatName string, size int64, uuid string) string {
	return fmt.Sprintf("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\n"+
		"parentCID=ffffffff\ncreateType=\"vmfs\"\n\n# Extent description\n"+
		"RW %d VMFS \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"+
		"ddb.adapterType = \"lsilogic\"\nddb.virtualHWVersion = \"13\"\n"+
		"ddb.uuid = \"%s\"\n", size/512, flatName, spacedHex(strings.ReplaceAll(uuid, "-", "")))
}

// spacedHex spells hex digits in pairs, "60 00 c2 9d …", as VMware's
// descriptors and changeIds do.
func spacedHex(digits string) string {
	pairs := []string{}
	for i := 0; i+2 <= len(digits); i += 2 {
		pairs = append(pairs, digits[i:i+2])
	}
	return strings.Join(pairs, " ")
}

// newDiskUUID is a UUID the way ESX gives disks one: 6000C29 and random hex.
func newDiskUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return vmwareUUID("6000C29" + fmt.Sprintf("%x", b)[7:])
}

func vmwareUUID(hex string) string {
	if len(hex) != 32 {
		return hex
	}
	return hex[0:8] + "-" + hex[8:12] + "-" + hex[12:16] + "-" + hex[16:20] + "-" + hex[20:32]
}
