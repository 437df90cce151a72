declare module "htpasswd-js" {
  interface AuthenticateOptions {
    username: string;
    password: string;
    data?: string;
    file?: string;
  }
  const htpasswd: { authenticate(opts: AuthenticateOptions): Promise<boolean> };
  export default htpasswd;
}
