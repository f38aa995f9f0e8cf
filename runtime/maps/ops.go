package maps

// The syscall side: the bpf(2) element commands, with the kernel's errnos. The server does what
// depends on the fd (its read/write permissions, translating fds in fd arrays) and copies keys
// and values from and to the tool; these methods take the copies.

// Lookup is BPF_MAP_LOOKUP_ELEM: it copies the value of key into value (SyscallValueSize bytes).
func (m *Map) Lookup(key, value []byte, flags uint64) error {
	if flags&^UpdateLock != 0 || flags&UpdateLock != 0 {
		return eINVAL
	}
	if err := m.checkArgs(key, value); err != nil {
		return err
	}
	switch {
	case m.typ == Array || m.typ == PercpuArray:
		return m.arrayLookup(key, value)
	case m.typ.isHash():
		return m.hashLookup(key, value)
	case m.typ.isFdArray():
		return m.fdLookup(key, value)
	case m.typ == StackTrace:
		return m.stackLookup(key, value, false)
	}
	return ENOTSUPP
}

// Update is BPF_MAP_UPDATE_ELEM (value holds SyscallValueSize bytes; for fd arrays, the u32 id
// the server translated the fd to).
func (m *Map) Update(key, value []byte, flags uint64) error {
	if m.Frozen() {
		return ePERM
	}
	if flags&UpdateLock != 0 {
		return eINVAL
	}
	if err := m.checkArgs(key, value); err != nil {
		return err
	}
	switch {
	case m.typ == Array || m.typ == PercpuArray:
		return m.arrayUpdate(key, value, flags, 0, true)
	case m.typ.isHash():
		return m.hashUpdate(key, value, flags, 0, true)
	case m.typ.isFdArray():
		return m.fdUpdate(key, value, flags)
	case m.typ == StackTrace:
		return eINVAL
	}
	return ENOTSUPP
}

// Delete is BPF_MAP_DELETE_ELEM.
func (m *Map) Delete(key []byte) error {
	_, err := m.DeleteRef(key)
	return err
}

// DeleteRef is Delete that also returns, for an fd array, the id the entry held, so the server
// can drop its reference.
func (m *Map) DeleteRef(key []byte) (uint32, error) {
	if m.Frozen() {
		return 0, ePERM
	}
	if err := m.checkArgs(key, nil); err != nil {
		return 0, err
	}
	switch {
	case m.typ == Array || m.typ == PercpuArray:
		return 0, eINVAL
	case m.typ.isHash():
		return 0, m.hashDelete(key, nil)
	case m.typ.isFdArray():
		return m.fdDelete(key)
	case m.typ == StackTrace:
		return 0, m.stackDelete(key)
	}
	return 0, ENOTSUPP
}

// NextKey is BPF_MAP_GET_NEXT_KEY: key nil asks for the first key.
func (m *Map) NextKey(key, next []byte) error {
	if key != nil {
		if err := m.checkKey(key); err != nil {
			return err
		}
	}
	if m.typ == RingBuf {
		return ENOTSUPP
	}
	if err := m.checkKey(next); err != nil {
		return err
	}
	switch {
	case m.typ == Array || m.typ == PercpuArray || m.typ.isFdArray():
		return m.arrayNextKey(key, next)
	case m.typ.isHash():
		return m.hashNextKey(key, next)
	case m.typ == StackTrace:
		return m.stackNextKey(key, next)
	}
	return ENOTSUPP
}

// LookupAndDelete is BPF_MAP_LOOKUP_AND_DELETE_ELEM (hash and stack trace maps; ENOTSUPP for
// others).
func (m *Map) LookupAndDelete(key, value []byte, flags uint64) error {
	if flags&^UpdateLock != 0 {
		return eINVAL
	}
	if m.Frozen() {
		return ePERM
	}
	if flags&UpdateLock != 0 {
		return eINVAL
	}
	if !m.typ.isHash() && m.typ != StackTrace {
		return ENOTSUPP
	}
	if err := m.checkArgs(key, value); err != nil {
		return err
	}
	if m.typ == StackTrace {
		return m.stackLookup(key, value, true)
	}
	return m.hashDelete(key, value)
}

func (m *Map) checkArgs(key, value []byte) error {
	if m.keySize == 0 {
		if len(key) != 0 {
			return eINVAL
		}
	} else if err := m.checkKey(key); err != nil {
		return err
	}
	if value != nil {
		return m.checkValue(value)
	}
	return nil
}

// The program side: what helpers called by programs do.

// Elem is bpf_map_lookup_elem: the address of key's value (cpu's value for per-CPU maps) in this
// process's mapping, or 0. key has KeySize bytes.
func (m *Map) Elem(key []byte, cpu uint32) uint64 {
	if uint32(len(key)) != m.keySize {
		return 0
	}
	switch {
	case m.typ == Array || m.typ == PercpuArray:
		return m.arrayElem(key, cpu)
	case m.typ.isHash():
		return m.hashElem(key, cpu)
	}
	return 0
}

// UpdateElem is bpf_map_update_elem from a program running on cpu: per-CPU maps get cpu's value
// (a new element's other CPUs' values are zero). value has ValueSize bytes.
func (m *Map) UpdateElem(key, value []byte, flags uint64, cpu uint32) error {
	if uint32(len(key)) != m.keySize || uint32(len(value)) < m.valueSize || cpu >= m.ncpu {
		return eINVAL
	}
	switch {
	case m.typ == Array || m.typ == PercpuArray:
		return m.arrayUpdate(key, value, flags, cpu, false)
	case m.typ.isHash():
		return m.hashUpdate(key, value, flags, cpu, false)
	}
	return eINVAL
}

// DeleteElem is bpf_map_delete_elem from a program.
func (m *Map) DeleteElem(key []byte) error {
	if uint32(len(key)) != m.keySize {
		return eINVAL
	}
	if m.typ.isHash() {
		return m.hashDelete(key, nil)
	}
	return eINVAL
}
