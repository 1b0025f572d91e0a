// Room names to suggest, like "misty-coral-otter-4821": two adjectives, a noun and four
// digits, only characters room ids allow. About 2^33 combinations, so a room is not found by
// guessing while it is in use. No DOM.

const ADJECTIVES = (
  'amber ancient azure bold bouncy brave breezy bright calm candid cheery clever coral cosmic cozy crimson crisp ' +
  'dapper daring dreamy dusty eager electric emerald fancy fearless fluffy frosty fuzzy gentle giant glossy golden ' +
  'grand happy hazy hearty hidden humble icy indigo jade jolly keen kind lively loyal lucky lunar magic marble ' +
  'mellow merry mighty minty misty mossy neon nimble noble olive peachy plucky polar proud quick quiet rapid rosy ' +
  'royal rugged rustic sandy scarlet secret serene sharp shiny silent silver sleepy sly smooth snowy solar sparkly ' +
  'spicy spry steady stellar stormy sturdy sunny sweet swift teal tender thrifty tidy tiny upbeat vast velvet ' +
  'vivid wandering warm whimsical wild windy wise witty young zesty zippy'
).split(' ');
const NOUNS = (
  'acorn anchor apricot badger beacon biscuit bison bramble breeze cactus canyon castle cedar cloud clover comet ' +
  'compass cricket crystal dolphin dragon ember falcon fern fjord forest fox galaxy garden geyser glacier harbor ' +
  'hedgehog heron island jaguar kettle kite lagoon lantern lemur lighthouse lotus lynx mango maple marmot meadow ' +
  'meteor mountain muffin nebula nectar noodle oasis orchid otter owl panda parrot pebble pepper phoenix pine ' +
  'pinecone planet prairie pretzel puffin quartz rabbit raven reef river robin rocket saffron salmon sparrow ' +
  'spruce squirrel summit thistle thunder tiger tulip tundra turtle valley violet volcano voyage waffle walrus ' +
  'whale willow wombat yak zebra'
).split(' ');

/** @param {number} n  a uniformly random integer in [0, n) */
function randomBelow(n) {
  const buf = new Uint32Array(1);
  const limit = Math.floor(0x1_0000_0000 / n) * n;
  for (;;) {
    crypto.getRandomValues(buf);
    if (buf[0] < limit) return buf[0] % n;
  }
}

/** A fresh room name like "misty-coral-otter-4821" (only characters room ids allow). */
/** A fresh room name like "misty-coral-otter-4821" (only characters room ids allow). */
export function randomRoomName() {
  const a = ADJECTIVES[randomBelow(ADJECTIVES.length)];
  let b = ADJECTIVES[randomBelow(ADJECTIVES.length)];
  while (b === a) b = ADJECTIVES[randomBelow(ADJECTIVES.length)];
  const noun = NOUNS[randomBelow(NOUNS.length)];
  const digits = String(randomBelow(10_000)).padStart(4, '0');
  return `${a}-${b}-${noun}-${digits}`;
}
