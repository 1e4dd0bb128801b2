// A Lambda@Edge handler that changes nothing: the request goes on (viewer-request), the origin's
// response goes back (origin-response). For the local edge until the copilot bundle is there.
export const handler = async (event) => {
  const cf = event.Records[0].cf;
  return cf.config.eventType === 'origin-response' ? cf.response : cf.request;
};
