package main

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// elfProgram returns the program in an ELF object (the runner's --elf form): the executable
// section that holds the symbol main, else the first executable section. Relocations are not
// applied: the runner's objects have none.
func elfProgram(b []byte) ([]byte, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("ELF: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_BPF {
		return nil, fmt.Errorf("ELF: machine %v, not BPF", f.Machine)
	}
	pick := -1
	if syms, err := f.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "main" && int(s.Section) < len(f.Sections) {
				pick = int(s.Section)
				break
			}
		}
	}
	for i, s := range f.Sections {
		if pick >= 0 && i != pick {
			continue
		}
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && s.Size > 0 {
			data, err := s.Data()
			if err != nil {
				return nil, fmt.Errorf("ELF section %s: %v", s.Name, err)
			}
			return data, nil
		}
	}
	return nil, fmt.Errorf("ELF: no executable section")
}
