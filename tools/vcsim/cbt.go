package main

// Changed block tracking (CBT), which the simulator leaves out (on with
// -byid-root, whose datastore folders it shares):
//
//   - ReconfigVM with changeTrackingEnabled=true on a VM that had it off
//     starts a change log for each of its disks, <disk>-ctk.log beside the
//     descriptor (ESX keeps <disk>-ctk.vmdk), headed by a new change-tracking
//     id; false removes the logs. Enabling it again starts new logs under a
//     new id, as ESX resets tracking.
//   - What ESX records for every write the guest issues, the lab's guest
//     writers record themselves: vmdr.lab.guest appends "offset length" to
//     the log after each write. A write made around them is not tracked —
//     as a write made to the extent behind ESX's back would not be.
//   - A snapshot's disk backings carry changeId "<tracking id>/<records>",
//     the log's length when the snapshot was taken (ESX: "52 … 2b/17").
//   - QueryChangedDiskAreas(snapshot, deviceKey, startOffset, changeId) is
//     answered here, before the simulator (which does not implement it):
//     "*" gives the areas of the extent holding data (SEEK_DATA/SEEK_HOLE);
//     "<id>/<n>" gives the union of the records from n to the snapshot's
//     changeId; another tracking id (tracking was reset) is a FileFault on
//     the log, as ESX answers. Replies hold at most maxAreas areas and say
//     so by their length, so a client must loop the way it must with ESX.
//
// Lab snapshots freeze nothing: the simulator makes no delta disks, so a
// snapshot's disk reads the live extent.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"io/ioutil"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	ctkHeader = "vmdr-ctk "
	maxAreas  = 4096
	seekData  = 3 // lseek(2) SEEK_DATA
	seekHole  = 4 // lseek(2) SEEK_HOLE
)

type cbtEmulator struct {
	disks *byIDEmulator // resolves "[ds] path" to the lab's files
	inner http.Handler  // the simulator
}

func (c *cbtEmulator) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VmdrCbtEmulator", Value: "cbt"}
}

// PutObject gives a new snapshot's disks their changeIds. The snapshot's
// config is a shallow copy of the VM's: its disks are copied before they
// are changed, so the VM and earlier snapshots keep theirs.
func (c *cbtEmulator) PutObject(obj mo.Reference) {
	snap, ok := obj.(*simulator.VirtualMachineSnapshot)
	if !ok || snap.Config.ChangeTrackingEnabled == nil || !*snap.Config.ChangeTrackingEnabled {
		return
	}
	devices := make([]types.BaseVirtualDevice, len(snap.Config.Hardware.Device))
	for i, d := range snap.Config.Hardware.Device {
		devices[i] = d
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		descriptor, _, ok := c.disks.files(backing.FileName)
		if !ok {
			continue
		}
		id, records, err := readLog(ctkPath(descriptor), true)
		if err != nil {
			continue
		}
		diskCopy, backingCopy := *disk, *backing
		backingCopy.ChangeId = fmt.Sprintf("%s/%d", id, len(records))
		diskCopy.Backing = &backingCopy
		devices[i] = &diskCopy
	}
	snap.Config.Hardware.Device = devices
}

func (c *cbtEmulator) UpdateObject(mo.Reference, []types.PropertyChange) {}
func (c *cbtEmulator) RemoveObject(types.ManagedObjectReference)         {}

func ctkPath(descriptor string) string {
	return strings.TrimSuffix(descriptor, ".vmdk") + "-ctk.log"
}

// readLog returns a change log's tracking id and its records; a missing
// log is started when create is set.
func readLog(path string, create bool) (string, []string, error) {
	data, err := ioutil.ReadFile(path)
	if os.IsNotExist(err) && create {
		id, err := startLog(path)
		return id, nil, err
	}
	if err != nil {
		return "", nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if !strings.HasPrefix(lines[0], ctkHeader) {
		return "", nil, fmt.Errorf("%s: not a change log", path)
	}
	return strings.TrimPrefix(lines[0], ctkHeader), lines[1:], nil
}

// startLog writes an empty log under a new tracking id, spelled as ESX
// spells the first half of a changeId.
func startLog(path string) (string, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := spacedHex(hex.EncodeToString(b[:8])) + "-" + spacedHex(hex.EncodeToString(b[8:]))
	return id, writeAtomically(path, []byte(ctkHeader+id+"\n"))
}

// ServeHTTP answers QueryChangedDiskAreas and follows changeTrackingEnabled
// in ReconfigVM, then hands every request to the simulator.
func (c *cbtEmulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/sdk") {
		c.inner.ServeHTTP(w, r)
		return
	}
	body, err := ioutil.ReadAll(io.LimitReader(r.Body, 32<<20))
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	switch {
	case bytes.Contains(body, []byte("<QueryChangedDiskAreas")):
		if method, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil {
			if req, ok := method.Body.(*types.QueryChangedDiskAreas); ok {
				c.serveQuery(w, r, req)
				return
			}
		}
	case bytes.Contains(body, []byte("<RemoveSnapshot_Task")) || bytes.Contains(body, []byte("<RemoveAllSnapshots_Task")):
		if method, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil {
			c.guardSnapshotFiles(method.This)
		}
	case bytes.Contains(body, []byte("changeTrackingEnabled")) && c.authenticated(r):
		if method, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil {
			if req, ok := method.Body.(*types.ReconfigVM_Task); ok && req.Spec.ChangeTrackingEnabled != nil {
				c.track(req.This, *req.Spec.ChangeTrackingEnabled)
			}
		}
	}
	c.inner.ServeHTTP(w, r)
}

// authenticated asks the simulator whether the request's session is logged
// in (CurrentTime needs a session).
func (c *cbtEmulator) authenticated(r *http.Request) bool {
	probe := `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">` +
		`<soapenv:Body><CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime></soapenv:Body></soapenv:Envelope>`
	req := httptest.NewRequest(http.MethodPost, r.URL.Path, strings.NewReader(probe))
	req.Header = r.Header.Clone()
	req.ContentLength = int64(len(probe))
	rec := httptest.NewRecorder()
	c.inner.ServeHTTP(rec, req)
	return rec.Code == http.StatusOK
}

// track starts (on) or removes (off) the change logs of a VM's disks when
// its changeTrackingEnabled changes.
func (c *cbtEmulator) track(ref types.ManagedObjectReference, on bool) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		was := vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
		if was == on {
			return
		}
		for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
			backing, ok := d.(*types.VirtualDisk).Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			if descriptor, _, ok := c.disks.files(backing.FileName); ok {
				if on {
					_, _ = startLog(ctkPath(descriptor))
				} else {
					_ = os.Remove(ctkPath(descriptor))
				}
			}
		}
	})
}

// guardSnapshotFiles keeps a snapshot's removal from deleting a disk. The
// simulator removes the files whose layout keys a snapshot names, and its
// RefreshStorageInfo (run when a snapshot is removed) drops every file from
// the VM's layout (it stats "[ds] path" as a local path), after which keys
// are handed out again from 0: an older snapshot's key may then name a
// -flat.vmdk. A key that no longer names a snapshot file is cleared first.
func (c *cbtEmulator) guardSnapshotFiles(ref types.ManagedObjectReference) {
	if snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot); ok {
		ref = snap.Vm
	}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		names := map[int32]string{}
		for _, f := range vm.LayoutEx.File {
			names[f.Key] = f.Name
		}
		for i := range vm.LayoutEx.Snapshot {
			layout := &vm.LayoutEx.Snapshot[i]
			if !strings.HasSuffix(names[layout.DataKey], ".vmsn") {
				layout.DataKey = -1
			}
			if !strings.HasSuffix(names[layout.MemoryKey], ".vmem") {
				layout.MemoryKey = -1
			}
		}
	})
}

type soapFault struct {
	kind, message, detail string
}

func (c *cbtEmulator) serveQuery(w http.ResponseWriter, r *http.Request, req *types.QueryChangedDiskAreas) {
	if !c.authenticated(r) {
		writeFault(w, soapFault{"NotAuthenticated", "not logged in",
			fmt.Sprintf(`<object type="%s">%s</object><privilegeId>VirtualMachine.Provisioning.DiskRandomRead</privilegeId>`,
				req.This.Type, req.This.Value)})
		return
	}
	info, fault := c.query(req)
	if fault != nil {
		writeFault(w, *fault)
		return
	}
	var areas strings.Builder
	for _, a := range info.ChangedArea {
		fmt.Fprintf(&areas, "<changedArea><start>%d</start><length>%d</length></changedArea>", a.Start, a.Length)
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, `%s<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" `+
		`xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`+
		`<soapenv:Body><QueryChangedDiskAreasResponse xmlns="urn:vim25"><returnval>`+
		`<startOffset>%d</startOffset><length>%d</length>%s</returnval>`+
		`</QueryChangedDiskAreasResponse></soapenv:Body></soapenv:Envelope>`,
		xml.Header, info.StartOffset, info.Length, areas.String())
}

func writeFault(w http.ResponseWriter, f soapFault) {
	var message bytes.Buffer
	_ = xml.EscapeText(&message, []byte(f.message))
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `%s<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" `+
		`xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`+
		`<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring>`+
		`<detail><%sFault xmlns="urn:vim25" xsi:type="%s">%s</%sFault></detail>`+
		`</soapenv:Fault></soapenv:Body></soapenv:Envelope>`,
		xml.Header, message.String(), f.kind, f.kind, f.detail, f.kind)
}

func invalidArgument(property, message string) *soapFault {
	return &soapFault{"InvalidArgument", message, "<invalidProperty>" + property + "</invalidProperty>"}
}

// query computes the answer under the snapshot's lock.
func (c *cbtEmulator) query(req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, *soapFault) {
	if req.Snapshot == nil {
		return nil, invalidArgument("snapshot", "a snapshot is needed")
	}
	snap, ok := simulator.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
	if !ok || snap.Vm != req.This {
		return nil, invalidArgument("snapshot", "no such snapshot of this VM")
	}
	var disk *types.VirtualDisk
	simulator.Map.WithLock(snap, func() {
		for _, d := range snap.Config.Hardware.Device {
			if vd, ok := d.(*types.VirtualDisk); ok && vd.Key == req.DeviceKey {
				copied := *vd
				disk = &copied
			}
		}
	})
	if disk == nil {
		return nil, invalidArgument("deviceKey", "no disk with this key in the snapshot")
	}
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, invalidArgument("deviceKey", "not a flat disk")
	}
	descriptor, flat, ok := c.disks.files(backing.FileName)
	if !ok {
		return nil, invalidArgument("deviceKey", "the disk's datastore is not known")
	}
	capacity := disk.CapacityInBytes
	if capacity == 0 {
		capacity = disk.CapacityInKB * 1024
	}
	if req.StartOffset < 0 || req.StartOffset > capacity {
		return nil, invalidArgument("startOffset", "beyond the disk")
	}
	ctk := ctkPath(descriptor)
	fileFault := &soapFault{"FileFault", "Error caused by file " + ctk,
		"<file>" + backing.FileName + "</file>"}
	var areas []types.DiskChangeExtent
	if req.ChangeId == "*" {
		var err error
		if areas, err = allocated(flat, capacity); err != nil {
			return nil, fileFault
		}
	} else {
		var err error
		if areas, err = changedSince(ctk, req.ChangeId, backing.ChangeId, capacity); err != nil {
			return nil, fileFault
		}
	}
	return page(areas, req.StartOffset, capacity), nil
}

// allocated is the data areas of the extent, holes left out.
func allocated(flat string, capacity int64) ([]types.DiskChangeExtent, error) {
	f, err := os.Open(flat)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var areas []types.DiskChangeExtent
	for pos := int64(0); pos < capacity; {
		start, err := f.Seek(pos, seekData)
		if err != nil || start >= capacity {
			break // ENXIO: no data after pos
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return nil, err
		}
		if end > capacity {
			end = capacity
		}
		areas = append(areas, types.DiskChangeExtent{Start: start, Length: end - start})
		pos = end
	}
	return areas, nil
}

// changedSince merges the log's records between changeId "<id>/<n>" and the
// snapshot's "<id>/<m>".
func changedSince(ctk, since, at string, capacity int64) ([]types.DiskChangeExtent, error) {
	fromID, from, err := splitChangeID(since)
	if err != nil {
		return nil, err
	}
	atID, to, err := splitChangeID(at)
	if err != nil || fromID != atID || from > to {
		return nil, fmt.Errorf("change id %q does not lead to %q", since, at)
	}
	id, records, err := readLog(ctk, false)
	if err != nil {
		return nil, err
	}
	if id != atID || len(records) < to {
		return nil, fmt.Errorf("%s was reset", ctk)
	}
	var areas []types.DiskChangeExtent
	for _, line := range records[from:to] {
		var start, length int64
		if _, err := fmt.Sscanf(line, "%d %d", &start, &length); err != nil || start < 0 || length <= 0 {
			return nil, fmt.Errorf("%s: bad record %q", ctk, line)
		}
		if start < capacity {
			if start+length > capacity {
				length = capacity - start
			}
			areas = append(areas, types.DiskChangeExtent{Start: start, Length: length})
		}
	}
	return merge(areas), nil
}

func splitChangeID(id string) (string, int, error) {
	i := strings.LastIndex(id, "/")
	if i < 0 {
		return "", 0, fmt.Errorf("bad change id %q", id)
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n < 0 {
		return "", 0, fmt.Errorf("bad change id %q", id)
	}
	return id[:i], n, nil
}

func merge(areas []types.DiskChangeExtent) []types.DiskChangeExtent {
	sort.Slice(areas, func(i, j int) bool { return areas[i].Start < areas[j].Start })
	var out []types.DiskChangeExtent
	for _, a := range areas {
		if n := len(out); n > 0 && a.Start <= out[n-1].Start+out[n-1].Length {
			if end := a.Start + a.Length; end > out[n-1].Start+out[n-1].Length {
				out[n-1].Length = end - out[n-1].Start
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// page is the reply from startOffset: every area up to the end of the disk,
// or the first maxAreas with the length ending after the last.
func page(areas []types.DiskChangeExtent, startOffset, capacity int64) *types.DiskChangeInfo {
	info := &types.DiskChangeInfo{StartOffset: startOffset, Length: capacity - startOffset}
	for _, a := range areas {
		end := a.Start + a.Length
		if end <= startOffset {
			continue
		}
		if a.Start < startOffset {
			a = types.DiskChangeExtent{Start: startOffset, Length: end - startOffset}
		}
		if len(info.ChangedArea) == maxAreas {
			last := info.ChangedArea[maxAreas-1]
			info.Length = last.Start + last.Length - startOffset
			break
		}
		info.ChangedArea = append(info.ChangedArea, a)
	}
	return info
}
