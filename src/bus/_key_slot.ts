/**
 * Redis Cluster key slots: which of the 16,384 slots a key hashes to (CRC16 of the key, or of
 * its `{hash tag}`), and a short hash tag for each slot, so that a key of one's own can be put in
 * the same slot as a given user's keys (the Redis engine keeps one script generation marker per
 * slot, beside the users whose keys hash there).
 *
 * @module
 */

/** The number of hash slots of a Redis Cluster. */
export const SLOT_COUNT = 16_384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[i] = crc & 0xffff;
  }
  return table;
})();

const encoder = new TextEncoder();

/** CRC16/XMODEM of the UTF-8 bytes of `text`, as Redis Cluster computes it. */
function crc16(text: string): number {
  let crc = 0;
  for (const byte of encoder.encode(text)) {
    crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  }
  return crc;
}

/**
 * The slot of a key: of the text between the first `{` and the next `}` when that text is not
 * empty (a hash tag), else of the whole key.
 */
export function keySlot(key: string): number {
  const open = key.indexOf("{");
  if (open !== -1) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % SLOT_COUNT;
  }
  return crc16(key) % SLOT_COUNT;
}

let slotTags: string[] | undefined;

/**
 * A hash tag (the text to put between braces) whose keys land in `slot`: the shortest base-36
 * counter that hashes there, found once for every slot (about 160,000 CRCs, a few ms).
 *
 * @throws {RangeError} when `slot` is not an integer in `0..16383`.
 */
export function slotTag(slot: number): string {
  if (!Number.isSafeInteger(slot) || slot < 0 || slot >= SLOT_COUNT) {
    throw new RangeError(`Cannot find a slot tag: "slot" must be 0..16383, received ${slot}`);
  }
  if (!slotTags) {
    const tags = new Array<string>(SLOT_COUNT);
    let found = 0;
    for (let i = 0; found < SLOT_COUNT; i++) {
      const tag = i.toString(36);
      const s = crc16(tag) % SLOT_COUNT;
      if (tags[s] === undefined) {
        tags[s] = tag;
        found++;
      }
    }
    slotTags = tags;
  }
  return slotTags[slot];
}
