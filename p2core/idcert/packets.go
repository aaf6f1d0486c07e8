package idcert

import (
	"bytes"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// OpenPGP packet tags (RFC 9580, section 5) that may appear in a
// transferable public key, plus the ones that betray private material.
const (
	tagSignature     = 2
	tagSecretKey     = 5
	tagPublicKey     = 6
	tagSecretSubkey  = 7
	tagTrust         = 12
	tagUserID        = 13
	tagPublicSubkey  = 14
	tagUserAttribute = 17
	tagPadding       = 21
)

// rawPacket is one OpenPGP packet exactly as found in the input: header and
// body bytes, so that a key can be re-emitted byte for byte.
type rawPacket struct {
	tag  byte
	full []byte // header and body
	body []byte // body only, a sub-slice of full
}

// splitPackets frames data into packets without interpreting their bodies.
// Both the old and the new header formats are accepted; partial and
// indeterminate lengths are refused because they are only legal for data
// packets, never inside keys. Every length is checked against the remaining
// input before it is used, so the function allocates nothing proportional to
// a claimed length.
func splitPackets(data []byte) ([]rawPacket, error) {
	var out []rawPacket
	rest := data
	for len(rest) > 0 {
		start := rest
		ctb := rest[0]
		rest = rest[1:]
		if ctb&0x80 == 0 {
			return nil, fmt.Errorf("byte %d is not an OpenPGP packet header", len(data)-len(start))
		}
		var tag byte
		var length uint64
		if ctb&0x40 != 0 { // new format
			tag = ctb & 0x3f
			if len(rest) == 0 {
				return nil, errTruncated
			}
			switch l0 := rest[0]; {
			case l0 < 192:
				length = uint64(l0)
				rest = rest[1:]
			case l0 < 224:
				if len(rest) < 2 {
					return nil, errTruncated
				}
				length = (uint64(l0)-192)<<8 + uint64(rest[1]) + 192
				rest = rest[2:]
			case l0 == 255:
				if len(rest) < 5 {
					return nil, errTruncated
				}
				length = uint64(rest[1])<<24 | uint64(rest[2])<<16 | uint64(rest[3])<<8 | uint64(rest[4])
				rest = rest[5:]
			default:
				return nil, fmt.Errorf("packet with tag %d uses a partial body length, which keys never use", tag)
			}
		} else { // old format
			tag = (ctb >> 2) & 0x0f
			n := 0
			switch ctb & 0x03 {
			case 0:
				n = 1
			case 1:
				n = 2
			case 2:
				n = 4
			default:
				return nil, fmt.Errorf("packet with tag %d has an indeterminate length, which keys never use", tag)
			}
			if len(rest) < n {
				return nil, errTruncated
			}
			for i := 0; i < n; i++ {
				length = length<<8 | uint64(rest[i])
			}
			rest = rest[n:]
		}
		if length > uint64(len(rest)) {
			return nil, errTruncated
		}
		headerLen := len(start) - len(rest)
		full := start[:headerLen+int(length)]
		out = append(out, rawPacket{tag: tag, full: full, body: full[headerLen:]})
		rest = rest[length:]
	}
	return out, nil
}

var errTruncated = fmt.Errorf("truncated OpenPGP packet")

// checkKeyPacketTags makes sure packets form the outline of exactly one
// transferable public key: a public-key packet first, then only signatures,
// User IDs, user attributes, public subkeys and padding. Private-key packets
// get their own message, because sending them is a mistake worth naming.
// Duplicate User ID packets are refused: they make "the packets of this User
// ID" ambiguous.
func checkKeyPacketTags(pkts []rawPacket) error {
	if len(pkts) == 0 {
		return fmt.Errorf("no OpenPGP packets found")
	}
	seenUID := make(map[string]bool)
	for i, p := range pkts {
		switch p.tag {
		case tagSecretKey, tagSecretSubkey:
			return fmt.Errorf("the data contains private key material; send only the public key (gpg --export, not --export-secret-keys)")
		case tagPublicKey:
			if i != 0 {
				return fmt.Errorf("the data contains more than one key; send exactly one")
			}
		case tagSignature, tagPublicSubkey, tagUserAttribute, tagPadding:
			if i == 0 {
				return fmt.Errorf("the data does not start with a public key packet")
			}
		case tagUserID:
			if i == 0 {
				return fmt.Errorf("the data does not start with a public key packet")
			}
			if seenUID[string(p.body)] {
				return fmt.Errorf("the User ID %q appears twice", truncateForMessage(p.body))
			}
			seenUID[string(p.body)] = true
		case tagTrust:
			return fmt.Errorf("the data contains a trust packet, which is local to a keyring and must not be exported")
		default:
			return fmt.Errorf("the data contains an OpenPGP packet of type %d, which does not belong in a public key", p.tag)
		}
	}
	return nil
}

// packetsLen is the total size of pkts.
func packetsLen(pkts []rawPacket) int {
	n := 0
	for _, p := range pkts {
		n += len(p.full)
	}
	return n
}

// truncateForMessage shortens untrusted text quoted in an error message.
func truncateForMessage(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// canonicalKeyPacket reports whether go-crypto's reading of a key packet
// serialises back to exactly body. Certifications hash body as the key
// carries it, so this guarantees that those bytes are the key go-crypto
// parsed, and that its fingerprint is the one every implementation computes.
func canonicalKeyPacket(pub *packet.PublicKey, body []byte) bool {
	var b bytes.Buffer
	if err := pub.Serialize(&b); err != nil {
		return false
	}
	pkts, err := splitPackets(b.Bytes())
	return err == nil && len(pkts) == 1 && bytes.Equal(pkts[0].body, body)
}
