// "@/lib/dub" of Dub's guides: the Dub client, as a Dub user writes it. Switching to
// firsttag changes two things: DUB_API_KEY holds the site's firsttag secret key (sk_…),
// and serverURL points at firsttag.
import { Dub } from "dub";

export const dub = new Dub({
  token: process.env.DUB_API_KEY,
  serverURL: process.env.DUB_SERVER_URL, // e.g. https://t.example.com/api/v1
});
