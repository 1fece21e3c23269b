/** The SVG charts one report links to, collected while its sections render. */
export interface Charts {
  /** Path of the charts dir as the markdown links to it. */
  link: string;
  files: Map<string, string>;
}

/** Keeps `svg` as `<name>.svg` and returns the markdown image that shows it. */
export function addChart(charts: Charts, name: string, svg: string): string {
  charts.files.set(`${name}.svg`, svg);
  return `![${name}](${charts.link}/${name}.svg)`;
}
